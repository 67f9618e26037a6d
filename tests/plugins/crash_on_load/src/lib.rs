//! Test fixture `librex_crash_on_load.so`: loading it runs an ELF initialiser (`.init_array`)
//! that aborts, as a library with a broken constructor would. `rex plugin-check` and
//! `rex plugin-list` load libraries in a child process: they must report the crash
//! (`killed by SIGABRT`) and live on.

extern "C" fn crash() {
    std::process::abort();
}

#[used]
#[unsafe(link_section = ".init_array")]
static CRASH_ON_LOAD: extern "C" fn() = crash;
