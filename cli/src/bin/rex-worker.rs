//! The `rex-worker` binary: one supervised worker child, started by `rex asynctask-workers`
//! (see `rex_cli::worker`). Only the child's code is linked in, so each child maps less.

fn main() {
    std::process::exit(rex_cli::worker::main());
}
