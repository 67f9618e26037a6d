//! The host side of the plugin ABI: finding `librex_<name>.so`, checking its table, and calling
//! into it.
//!
//! The master only *reads* a plugin's descriptor (name, workers, tasks, settings defaults);
//! worker code runs only in worker children (and in `rex <plugin-task>` processes). Libraries
//! are never unloaded: a loaded Rust cdylib may have registered thread-locals or destructors,
//! and unloading it is a known source of crashes.

use std::path::{Path, PathBuf};

use rex_plugin_abi as abi;
use serde::Deserialize;
use serde_json::Value;

/// Why a plugin could not be used; each message names the file or the directories searched.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("package {package} not found: no {file} in any of:\n{}", list(.searched))]
    NotFound {
        package: String,
        file: String,
        searched: Vec<PathBuf>,
    },
    #[error("cannot load plugin {}: {message}", .path.display())]
    Load { path: PathBuf, message: String },
    /// What [`check_shared_library`] found wrong, before the dynamic loader saw the file.
    #[error("cannot load plugin {}: {message}", .path.display())]
    NotALibrary { path: PathBuf, message: String },
    #[error("refusing to load plugin {}: {reason}; only its owner (or root) may be able to change it or its directory (chmod go-w)", .path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("{} is not a rex plugin: {reason}", .path.display())]
    NotAPlugin { path: PathBuf, reason: String },
    #[error("{} was built for rex plugin ABI v{found}, but this rex supports ABI v{supported}; rebuild it against a matching rex-plugin", .path.display())]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{} provides package {found}, expected {expected}", .path.display())]
    WrongPackage {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("plugin {package} failed in {operation}: {message}")]
    Call {
        package: String,
        operation: &'static str,
        message: String,
    },
}

impl PluginError {
    /// A stable name for the kind of error, for `rex plugin-list --json` and `plugin-check`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::NotFound { .. } => "not_found",
            PluginError::Load { .. } => "load_error",
            PluginError::NotALibrary { .. } => "not_a_library",
            PluginError::Unsafe { .. } => "unsafe_location",
            PluginError::NotAPlugin { .. } => "not_a_plugin",
            PluginError::AbiMismatch { .. } => "abi_mismatch",
            PluginError::WrongPackage { .. } => "wrong_package",
            PluginError::Call { .. } => "call_failed",
        }
    }
}

fn list(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "    (no plugin directories configured)".into();
    }
    dirs.iter()
        .map(|d| format!("    {}", d.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rex.asynctask_demo` -> `librex_asynctask_demo.so`; `acme.jobs` -> `librex_acme_jobs.so`.
pub fn library_file_name(package: &str) -> String {
    let stem = package
        .strip_prefix("rex.")
        .unwrap_or(package)
        .replace(['.', '-'], "_");
    format!(
        "{}rex_{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Look for a package's library in `dirs`, in order.
pub fn find(package: &str, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    let file = library_file_name(package);
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| PluginError::NotFound {
            package: package.to_string(),
            file,
            searched: dirs.to_vec(),
        })
}

/// An error with its sources: libloading's `dlopen failed` keeps the reason in its source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What can be told about a file before handing it to the dynamic loader, whose own
/// messages are terse (`dlopen failed`) and which maps a truncated library as if it were
/// whole — the process then dies of SIGBUS when it touches the missing part. The ELF header,
/// program headers and section headers are checked to lie within the file.
fn check_shared_library(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let read = |offset: u64, size: usize| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; size];
        match offset.checked_add(size as u64) {
            Some(end) if end <= len => {}
            _ => return Err("the file is truncated (its ELF headers point past its end)".into()),
        }
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| e.to_string())?;
        Ok(buf)
    };
    if len == 0 {
        return Err("the file is empty".into());
    }
    if len < 4 || read(0, 4)? != b"\x7fELF" {
        return Err("the file is not a shared library (it has no ELF header)".into());
    }
    let header =
        read(0, 64).map_err(|_| "the file is truncated (in its ELF header)".to_string())?;
    // e_ident: 64-bit (2), little-endian (1) — what every platform rex builds for uses.
    if header[4] != 2 || header[5] != 1 {
        return Err("the file is not a 64-bit little-endian ELF library".into());
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as u64;
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    if u16_at(&header, 0x10) != 3 {
        return Err("the file is an ELF file but not a shared library (ET_DYN)".into());
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u16_at(&header, 0x36),
        u16_at(&header, 0x38),
    );
    let (shoff, shentsize, shnum) = (
        u64_at(&header, 0x28),
        u16_at(&header, 0x3A),
        u16_at(&header, 0x3C),
    );
    if phentsize < 56 {
        return Err("the file has malformed ELF program headers".into());
    }
    let table = read(phoff, (phentsize * phnum) as usize)?;
    for entry in table.chunks(phentsize as usize) {
        // PT_LOAD segments are mapped from the file: they must lie within it.
        if u32_at(entry, 0) == 1 {
            let end = u64_at(entry, 0x08).checked_add(u64_at(entry, 0x20));
            if end.is_none_or(|end| end > len) {
                return Err("the file is truncated (a loadable segment ends past its end)".into());
            }
        }
    }
    if shoff != 0 {
        read(shoff, (shentsize * shnum) as usize)?;
    }
    Ok(())
}

/// Like sshd's StrictModes: a library (and the directory holding it) that users other than
/// its owner could replace would run their code in every rex process. The owner must be
/// root or the user running rex; nobody else may write to either. A group may write only
/// when it is the owner's personal group (the user-private-group convention of a umask 002).
pub fn check_safe_location(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_because = |reason: String| PluginError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::canonicalize(path).map_err(|e| unsafe_because(e.to_string()))?;
    let dir = file.parent().unwrap_or(Path::new("/"));
    let me = nix::unistd::geteuid().as_raw();
    for (what, place) in [("the library", file.as_path()), ("its directory", dir)] {
        let meta = std::fs::metadata(place).map_err(|e| unsafe_because(e.to_string()))?;
        let shown = place.display();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(unsafe_because(format!(
                "{what} {shown} belongs to user {} (not root, not the user running rex)",
                meta.uid()
            )));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(unsafe_because(format!(
                "{what} {shown} is writable by every user"
            )));
        }
        if meta.mode() & 0o020 != 0 && !personal_group(meta.uid(), meta.gid()) {
            return Err(unsafe_because(format!(
                "{what} {shown} is writable by group {}",
                meta.gid()
            )));
        }
    }
    Ok(())
}

/// Whether `gid` is the primary group of `uid` with no other members.
fn personal_group(uid: u32, gid: u32) -> bool {
    use nix::unistd::{Gid, Group, Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(Some(group)) = Group::from_gid(Gid::from_raw(gid)) else {
        return false;
    };
    user.gid.as_raw() == gid && group.mem.iter().all(|m| *m == user.name)
}

/// A worker as declared in a manifest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct WorkerDecl {
    pub name: String,
    pub logger: String,
    #[serde(default)]
    pub summary: String,
}

/// A task (subcommand) as declared in a manifest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct TaskDecl {
    pub name: String,
    #[serde(default)]
    pub hint: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub usage: String,
}

/// The manifest document a plugin exports.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub package: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub settings: String,
    #[serde(default)]
    pub workers: Vec<WorkerDecl>,
    #[serde(default)]
    pub tasks: Vec<TaskDecl>,
}

/// A loaded, checked plugin library.
pub struct Plugin {
    pub path: PathBuf,
    pub manifest: Manifest,
    table: &'static abi::RexPluginV1,
}

/// What a worker call returned.
#[derive(Debug)]
pub enum CallResult {
    Ok(Value),
    /// The worker returned an error (`kind: error`) or panicked (`kind: panic`).
    Failed {
        panicked: bool,
        message: String,
        location: Option<String>,
        body: Value,
    },
    /// Unknown worker or undecodable request: permanent.
    Rejected(String),
}

impl Plugin {
    /// Open and check the library at `path`; `expected` is the package it must provide.
    pub fn load(path: &Path, expected: Option<&str>) -> Result<Plugin, PluginError> {
        let load_err = |message: String| PluginError::Load {
            path: path.to_path_buf(),
            message,
        };
        check_safe_location(path)?;
        check_shared_library(path).map_err(|message| PluginError::NotALibrary {
            path: path.to_path_buf(),
            message,
        })?;
        // SAFETY: loading runs the library's initialisers. Rust cdylibs have no life-before-main;
        // this is the documented trust boundary of plugins (they are code the operator installs).
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(chain(&e)))?;
        // Never unloaded (see module docs).
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol's type is fixed by the ABI; a library exporting the name with another
        // type is not a rex plugin and cannot be detected here.
        let entry = unsafe { lib.get::<abi::EntryFn>(abi::ENTRY_SYMBOL) };
        let entry = match entry {
            Ok(entry) => *entry,
            Err(_) => {
                for (major, symbol) in abi::OTHER_ENTRY_SYMBOLS {
                    if unsafe { lib.get::<abi::EntryFn>(*symbol) }.is_ok() {
                        return Err(PluginError::AbiMismatch {
                            path: path.to_path_buf(),
                            found: *major,
                            supported: abi::REX_ABI_MAJOR,
                        });
                    }
                }
                return Err(PluginError::NotAPlugin {
                    path: path.to_path_buf(),
                    reason: "it does not export rex_plugin_v1".into(),
                });
            }
        };
        // SAFETY: calling the entry point is the ABI's handshake; it returns a 'static table.
        let table = unsafe { entry() };
        if table.is_null() {
            return Err(PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: "rex_plugin_v1 returned no table".into(),
            });
        }
        // Read the header fields first; the rest is only valid once they check out.
        // SAFETY: every table starts with magic, abi_major, abi_minor, struct_size.
        let (magic, major, size) =
            unsafe { ((*table).magic, (*table).abi_major, (*table).struct_size) };
        if magic != abi::REX_ABI_MAGIC {
            return Err(PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: "bad magic number in its plugin table".into(),
            });
        }
        if major != abi::REX_ABI_MAJOR {
            return Err(PluginError::AbiMismatch {
                path: path.to_path_buf(),
                found: major,
                supported: abi::REX_ABI_MAJOR,
            });
        }
        if size < abi::MIN_PLUGIN_STRUCT_SIZE {
            return Err(PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: format!(
                    "its plugin table is {size} bytes, expected at least {}",
                    abi::MIN_PLUGIN_STRUCT_SIZE
                ),
            });
        }
        // SAFETY: magic, version and size checked; the table is 'static.
        let table: &'static abi::RexPluginV1 = unsafe { &*table };
        let manifest_text =
            unsafe { table.manifest_json.as_str() }.ok_or_else(|| PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: "its manifest is not UTF-8".into(),
            })?;
        let manifest: Manifest =
            serde_json::from_str(manifest_text).map_err(|e| PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: format!("malformed manifest: {e}"),
            })?;
        if let Some(expected) = expected
            && manifest.package != expected
        {
            return Err(PluginError::WrongPackage {
                path: path.to_path_buf(),
                found: manifest.package,
                expected: expected.to_string(),
            });
        }
        Ok(Plugin {
            path: path.to_path_buf(),
            manifest,
            table,
        })
    }

    /// The plugin ABI version its table declares (major, minor).
    pub fn abi_version(&self) -> (u32, u32) {
        (self.table.abi_major, self.table.abi_minor)
    }

    /// Give the plugin its host services and settings. Must precede [`Plugin::call`].
    pub fn init(&self, host: &'static abi::RexHostV1, config: &Value) -> Result<(), PluginError> {
        let config = config.to_string();
        let mut out = abi::RexBuf::EMPTY;
        // SAFETY: per the ABI; `host` is 'static and `config` outlives the call.
        let status = unsafe { (self.table.init)(host, abi::RexStr::new(&config), &mut out) };
        let body = self.take(out);
        if status == abi::RexStatus::OK {
            Ok(())
        } else {
            Err(self.call_error("init", &body))
        }
    }

    /// Run `worker` on a request document; see the ABI docs for its shape.
    pub fn call(&self, worker: &str, request: &impl serde::Serialize) -> CallResult {
        let request = serde_json::to_string(request).unwrap_or_default();
        let mut out = abi::RexBuf::EMPTY;
        // SAFETY: per the ABI; the strings outlive the call; the plugin catches its panics.
        let status = unsafe {
            (self.table.call)(
                abi::RexStr::new(worker),
                abi::RexStr::new(&request),
                &mut out,
            )
        };
        let body = self.take(out);
        interpret(status, body, worker, &self.manifest.package)
    }

    /// Run a plugin-provided task with its arguments; returns its exit code.
    pub fn run_task(&self, task: &str, argv: &[String]) -> Result<i32, PluginError> {
        let argv = serde_json::to_string(argv).unwrap_or_else(|_| "[]".into());
        let mut out = abi::RexBuf::EMPTY;
        // SAFETY: as for `call`.
        let status = unsafe {
            (self.table.run_task)(abi::RexStr::new(task), abi::RexStr::new(&argv), &mut out)
        };
        let body = self.take(out);
        if status == abi::RexStatus::OK {
            Ok(body.get("exit_code").and_then(Value::as_i64).unwrap_or(0) as i32)
        } else {
            Err(self.call_error("task", &body))
        }
    }

    /// Copy a returned buffer out as JSON and hand the buffer back to the plugin's allocator.
    fn take(&self, out: abi::RexBuf) -> Value {
        // SAFETY: `out` was filled by the plugin (or is EMPTY) and is freed exactly once below.
        let value = decode_body(unsafe { out.as_bytes() });
        if !out.ptr.is_null() {
            // SAFETY: the plugin allocated it; only its free_buf may release it.
            unsafe { (self.table.free_buf)(out) };
        }
        value
    }

    fn call_error(&self, operation: &'static str, body: &Value) -> PluginError {
        PluginError::Call {
            package: self.manifest.package.clone(),
            operation,
            message: body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string(),
        }
    }
}

/// What a worker call's status and response body mean (`worker` of `package`). Nothing in
/// the body is trusted: a field of the wrong type reads as absent.
pub fn interpret(status: abi::RexStatus, body: Value, worker: &str, package: &str) -> CallResult {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match status {
        abi::RexStatus::OK => CallResult::Ok(body),
        abi::RexStatus::UNKNOWN => {
            CallResult::Rejected(format!("worker {worker} is not provided by {package}"))
        }
        abi::RexStatus::BAD_INPUT => {
            CallResult::Rejected(text("message").unwrap_or_else(|| "bad request".into()))
        }
        status => CallResult::Failed {
            panicked: status == abi::RexStatus::PANIC,
            message: text("message")
                .unwrap_or_else(|| format!("plugin returned status {}", status.0)),
            location: text("location"),
            body,
        },
    }
}

/// A response buffer's bytes as JSON; anything that is not JSON reads as `null`.
pub fn decode_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// The host services table handed to plugins: logging goes through our logger so plugin
/// records come out in the host's format under the worker's logger name.
pub fn host_table(min_level: crate::logging::Level) -> &'static abi::RexHostV1 {
    unsafe extern "C" fn log(
        _data: *mut std::ffi::c_void,
        level: u32,
        logger: abi::RexStr,
        message: abi::RexStr,
    ) {
        // SAFETY: per the ABI, both strings are valid for the duration of the call.
        let (logger, message) = unsafe { (logger.as_bytes(), message.as_bytes()) };
        let logger = String::from_utf8_lossy(logger);
        let message = String::from_utf8_lossy(message);
        crate::logging::Logger::new(logger.as_ref()).log(
            crate::logging::Level::from_number(level),
            format_args!("{message}"),
        );
    }
    Box::leak(Box::new(abi::RexHostV1 {
        struct_size: std::mem::size_of::<abi::RexHostV1>() as u32,
        min_level: min_level as u32,
        data: std::ptr::null_mut(),
        log,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn files_that_are_not_whole_shared_libraries_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.so", b"");
        assert_eq!(
            check_shared_library(&empty).unwrap_err(),
            "the file is empty"
        );
        let text = write(dir.path(), "text.so", b"hello\n");
        assert_eq!(
            check_shared_library(&text).unwrap_err(),
            "the file is not a shared library (it has no ELF header)"
        );
        // This test binary is position-independent: an ET_DYN ELF file, as a library is.
        let whole = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let copy = write(dir.path(), "whole.so", &whole);
        assert_eq!(check_shared_library(&copy), Ok(()));
        for cut in [10, 100, 4096, whole.len() / 2, whole.len() - 1] {
            let truncated = write(dir.path(), "cut.so", &whole[..cut]);
            let err = check_shared_library(&truncated).unwrap_err();
            assert!(
                err.starts_with("the file is truncated"),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_library_others_could_replace_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lib = write(dir.path(), "librex_x.so", b"\x7fELF");
        assert!(check_safe_location(&lib).is_ok());

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_safe_location(&lib).unwrap_err().to_string();
        assert!(err.contains("is writable by every user"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o646)).unwrap();
        let err = check_safe_location(&lib).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "refusing to load plugin {}: the library",
                lib.display()
            )),
            "{err}"
        );
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();

        // Owned by another user (needs root to arrange).
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&lib, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = check_safe_location(&lib).unwrap_err().to_string();
            assert!(err.contains("belongs to user 65534"), "{err}");
        }
    }
}
