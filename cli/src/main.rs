//! The `rex` binary: everything lives in the `rex_cli` library.

fn main() {
    std::process::exit(rex_cli::main_os(std::env::args_os().skip(1)));
}
