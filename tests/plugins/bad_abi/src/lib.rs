//! Test fixture `rex.bad_abi`: a library that exports `rex_plugin_v1` with a correct magic but
//! ABI major 2, as a plugin built by a future, incompatible SDK would. The host must refuse it
//! with an error naming the file, and must never call into it.

use rex_plugin_abi::{REX_ABI_MAGIC, RexBuf, RexHostV1, RexPluginV1, RexStatus, RexStr};

unsafe extern "C" fn init(
    _host: *const RexHostV1,
    _config: RexStr,
    _out: *mut RexBuf,
) -> RexStatus {
    RexStatus::ERROR
}

unsafe extern "C" fn call(_worker: RexStr, _request: RexStr, _out: *mut RexBuf) -> RexStatus {
    RexStatus::ERROR
}

unsafe extern "C" fn run_task(_task: RexStr, _argv: RexStr, _out: *mut RexBuf) -> RexStatus {
    RexStatus::ERROR
}

unsafe extern "C" fn free_buf(_buf: RexBuf) {}

static TABLE: RexPluginV1 = RexPluginV1 {
    magic: REX_ABI_MAGIC,
    abi_major: 2,
    abi_minor: 0,
    struct_size: size_of::<RexPluginV1>() as u32,
    package: RexStr::new("rex.bad_abi"),
    version: RexStr::new("2.0.0"),
    sdk_version: RexStr::new("2.0.0"),
    manifest_json: RexStr::new("{}"),
    init,
    call,
    run_task,
    free_buf,
};

/// The entry point the host looks up.
#[unsafe(no_mangle)]
pub extern "C" fn rex_plugin_v1() -> *const RexPluginV1 {
    &TABLE
}
