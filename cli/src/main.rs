//! The `rex` binary: everything lives in the `rex_cli` library.

fn main() {
    let argv = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(rex_cli::main(argv));
}
