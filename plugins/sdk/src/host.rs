//! What the host handed the plugin at `init`: its service table (logging, ...) and the
//! effective settings. Recorded by the C entry points (`shim`), read by `Context` logging and
//! by [`settings`]; kept apart from both so that neither depends on the other.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rex_plugin_abi::RexHostV1;
use serde_json::Value;

static HOST: AtomicPtr<RexHostV1> = AtomicPtr::new(std::ptr::null_mut());
static SETTINGS: OnceLock<Value> = OnceLock::new();

/// Record what `init` received. `host` must be null or point to a table that, per the ABI,
/// stays valid for the lifetime of the process; only the first settings are kept.
pub(crate) fn record(host: *const RexHostV1, settings: Option<&Value>) {
    HOST.store(host.cast_mut(), Ordering::Release);
    if let Some(settings) = settings {
        let _ = SETTINGS.set(settings.clone());
    }
}

/// The host table given to `init`, if any.
pub(crate) fn host() -> Option<&'static RexHostV1> {
    // SAFETY: `init` stores only null or pointers to tables of a sufficient size that, per the
    // ABI, stay valid for the lifetime of the process.
    unsafe { HOST.load(Ordering::Acquire).as_ref() }
}

/// The effective settings the host passed to `init` (`config_json.settings`); `None` before
/// `init` (for instance in unit tests). Only the first `init` is recorded.
pub fn settings() -> Option<&'static Value> {
    SETTINGS.get()
}
