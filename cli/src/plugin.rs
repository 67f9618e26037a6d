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
        // SAFETY: loading runs the library's initialisers. Rust cdylibs have no life-before-main;
        // this is the documented trust boundary of plugins (they are code the operator installs).
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
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
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        match status {
            abi::RexStatus::OK => CallResult::Ok(body),
            abi::RexStatus::UNKNOWN => CallResult::Rejected(format!(
                "worker {worker} is not provided by {}",
                self.manifest.package
            )),
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
        let value = serde_json::from_slice(unsafe { out.as_bytes() }).unwrap_or(Value::Null);
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
