//! The binary contract between the `rex` host and its plugins.
//!
//! Only `#[repr(C)]` types, C scalars and UTF-8/JSON byte strings cross the boundary, so a
//! plugin built with another rustc or other dependency versions still loads. Nothing here
//! allocates; ownership rules are stated on each type.
//!
//! # Handshake
//!
//! A plugin is a `cdylib` exporting one function, [`ENTRY_SYMBOL`] (`rex_plugin_v1`), that
//! returns a pointer to a `'static` [`RexPluginV1`]. The host checks, in order:
//! [`REX_ABI_MAGIC`], `abi_major == REX_ABI_MAJOR`, and `struct_size >= MIN_PLUGIN_STRUCT_SIZE`.
//! A newer minor version may append fields; the host reads them only when `struct_size` covers
//! them. Any incompatible change bumps [`REX_ABI_MAJOR`], and with it the symbol name, so an old
//! host can never call a table it does not understand.
//!
//! # Calls
//!
//! Every call takes borrowed [`RexStr`] arguments (valid for the duration of the call) and
//! writes its result into a [`RexBuf`] owned by the plugin; the host must hand every returned
//! buffer back through [`RexPluginV1::free_buf`], never to its own allocator. Panics are caught
//! inside the plugin and reported as [`RexStatus::PANIC`]; nothing unwinds across the boundary.
//!
//! The JSON documents exchanged (manifest, call request/response) are described on
//! [`RexPluginV1`]. The ABI version is independent of the rex release version.
#![no_std]

use core::ffi::c_void;

/// `b"REXPLUG\0"` read as a little-endian `u64`.
pub const REX_ABI_MAGIC: u64 = u64::from_le_bytes(*b"REXPLUG\0");
/// Major ABI version; part of the entry symbol's name.
pub const REX_ABI_MAJOR: u32 = 1;
/// Minor ABI version; only additive changes (fields appended to the tables).
pub const REX_ABI_MINOR: u32 = 0;
/// The exported entry point for [`REX_ABI_MAJOR`] = 1, NUL-terminated for `dlsym`.
pub const ENTRY_SYMBOL: &[u8] = b"rex_plugin_v1\0";
/// Entry points of other major versions a host probes to explain a mismatch.
pub const OTHER_ENTRY_SYMBOLS: &[(u32, &[u8])] = &[
    (0, b"rex_plugin_v0\0"),
    (2, b"rex_plugin_v2\0"),
    (3, b"rex_plugin_v3\0"),
];
/// `size_of::<RexPluginV1>()` as of ABI 1.0; tables shorter than this are rejected.
pub const MIN_PLUGIN_STRUCT_SIZE: u32 = core::mem::size_of::<RexPluginV1>() as u32;

/// A borrowed UTF-8 string (not NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RexStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl RexStr {
    /// A string borrowed from `s`; valid as long as `s` is.
    pub const fn new(s: &str) -> Self {
        RexStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The empty string.
    pub const EMPTY: RexStr = RexStr::new("");

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    /// # Safety
    /// As [`RexStr::as_bytes`]; returns `None` when the bytes are not UTF-8.
    pub unsafe fn as_str<'a>(&self) -> Option<&'a str> {
        // SAFETY: guaranteed by the caller.
        core::str::from_utf8(unsafe { self.as_bytes() }).ok()
    }
}

/// A byte buffer allocated by the plugin; only the plugin's `free_buf` may release it.
#[repr(C)]
#[derive(Debug)]
pub struct RexBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl RexBuf {
    /// An empty buffer that owns nothing (freeing it is a no-op).
    pub const EMPTY: RexBuf = RexBuf {
        ptr: core::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// # Safety
    /// The buffer must have been filled by a plugin call and not yet freed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the plugin wrote `len` initialised bytes at `ptr`.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Outcome of a plugin call. A transparent integer rather than an enum: a newer plugin may
/// return a code this host does not know, and an out-of-range enum discriminant would be UB.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RexStatus(pub u32);

impl RexStatus {
    /// Success; the buffer holds the response document.
    pub const OK: Self = Self(0);
    /// The worker or task returned an error; the buffer holds an error envelope.
    pub const ERROR: Self = Self(1);
    /// The worker or task panicked; the buffer holds an error envelope with the panic message.
    pub const PANIC: Self = Self(2);
    /// No worker or task of that name in this plugin.
    pub const UNKNOWN: Self = Self(3);
    /// The request document could not be decoded.
    pub const BAD_INPUT: Self = Self(4);
}

/// Log levels passed through [`RexHostV1::log`] (Python logging numbers).
pub mod level {
    pub const DEBUG: u32 = 10;
    pub const INFO: u32 = 20;
    pub const WARNING: u32 = 30;
    pub const ERROR: u32 = 40;
}

/// Services the host offers to a plugin; passed to [`RexPluginV1::init`] and valid for the
/// lifetime of the process.
#[repr(C)]
pub struct RexHostV1 {
    /// `size_of::<RexHostV1>()` as compiled into the host.
    pub struct_size: u32,
    /// Records below this level are dropped by the host; plugins may skip formatting them.
    pub min_level: u32,
    /// Opaque pointer handed back to every callback.
    pub data: *mut c_void,
    /// Emit one log record under `logger` (the worker's logger name).
    pub log: unsafe extern "C" fn(data: *mut c_void, level: u32, logger: RexStr, message: RexStr),
}

/// The table a plugin exports through `rex_plugin_v1()`.
///
/// JSON documents:
/// * `manifest_json` (static): `{"package": "rex.x", "version": "1.0.0", "requires": ["rex.asynctask"],
///   "settings": "<settings.yaml text>", "workers": [{"name", "logger", "summary"}],
///   "tasks": [{"name", "hint", "help", "usage"}]}`.
/// * `init(host, config_json)`: `config_json` is `{"settings": {...effective settings...},
///   "worker"?: "name"}`; a worker process names the worker it will run, and the plugin
///   constructs it then (an ERROR/PANIC reply fails the process start).
/// * `call(worker, request_json)`: request `{"queue", "task_id", "attempt", "payload": {...}}`;
///   response on OK `{"submits": [{"queue", "payload"}]}`; on ERROR/PANIC the envelope
///   `{"kind": "error"|"panic", "message", "location"?, "submits": [...]}`.
/// * `run_task(name, argv_json)`: argv is a JSON array of strings; response on OK
///   `{"exit_code": 0}`; on ERROR/PANIC the error envelope.
#[repr(C)]
pub struct RexPluginV1 {
    pub magic: u64,
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `size_of::<RexPluginV1>()` as compiled into the plugin.
    pub struct_size: u32,
    /// Package name, e.g. `rex.asynctask_demo`.
    pub package: RexStr,
    /// Package version.
    pub version: RexStr,
    /// Version of the `rex-plugin` SDK that built the table (diagnostics only).
    pub sdk_version: RexStr,
    /// The manifest document (see above).
    pub manifest_json: RexStr,
    pub init: unsafe extern "C" fn(
        host: *const RexHostV1,
        config_json: RexStr,
        out: *mut RexBuf,
    ) -> RexStatus,
    pub call:
        unsafe extern "C" fn(worker: RexStr, request_json: RexStr, out: *mut RexBuf) -> RexStatus,
    pub run_task:
        unsafe extern "C" fn(task: RexStr, argv_json: RexStr, out: *mut RexBuf) -> RexStatus,
    pub free_buf: unsafe extern "C" fn(buf: RexBuf),
}

/// Signature of the exported entry point.
pub type EntryFn = unsafe extern "C" fn() -> *const RexPluginV1;

// The table holds only pointers to 'static data and function pointers.
unsafe impl Sync for RexPluginV1 {}
unsafe impl Send for RexStr {}
unsafe impl Sync for RexStr {}
