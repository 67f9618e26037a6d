//! The [`export!`](crate::export) macro and its helpers.

/// Declare a plugin package and export its table as `rex_plugin_v1`.
///
/// ```text
/// rex_plugin::export! {
///     package: "rex.acme",                        // required, first
///     version: env!("CARGO_PKG_VERSION"),         // optional; default "0.0.0"
///     requires: ["rex.asynctask"],                // optional; default []
///     settings: include_str!("../settings.yaml"), // optional; default ""
///     workers: {                                  // optional; registration order is kept
///         "acme_worker" => AcmeWorker,            // any expression of a type implementing Worker
///         "acme_other" => Other::new(3),
///     },
///     tasks: {                                    // optional
///         "acme-hello" => hello,                  // fn(&mut TaskContext, Vec<String>) -> Result<()>
///         "acme-clean" => { run: clean, hint: "Remove stale files.", help: "Long help.", usage: "rex acme-clean [DIR]" },
///     },
/// }
/// ```
///
/// Sections come in this order, separated by commas. In the long task form `run` comes first;
/// `hint`, `help` and `usage` (default `rex <name>`) are optional, in any order.
///
/// The expansion is one item, `#[unsafe(no_mangle)] pub extern "C" fn rex_plugin_v1() -> *const
/// RexPluginV1`, with everything else (the plugin definition, the once-built manifest and table,
/// the per-thread worker instances) scoped inside it; invoke the macro once per `cdylib`. Worker
/// expressions are evaluated lazily, at most once per thread: when the host starts a worker
/// process for that worker (`init` names it, so a constructor that fails, fails the start), or
/// at its first task. Reading the manifest never constructs a worker.
///
/// Panics are caught and reported as `PANIC` only with `panic = "unwind"` (the default);
/// under `panic = "abort"` a panicking worker takes the process down.
#[macro_export]
macro_rules! export {
    (
        package: $package:expr
        $(, version: $version:expr)?
        $(, requires: [$($requires:expr),* $(,)?])?
        $(, settings: $settings:expr)?
        $(, workers: { $($worker_name:literal => $worker:expr),* $(,)? })?
        $(, tasks: { $($tasks:tt)* })?
        $(,)?
    ) => {
        /// The rex plugin entry point (ABI 1): returns this package's `'static` table.
        #[unsafe(no_mangle)]
        pub extern "C" fn rex_plugin_v1() -> *const $crate::abi::RexPluginV1 {
            struct RexExport;

            impl $crate::__private::Export for RexExport {
                const PLUGIN: &'static $crate::__private::PluginDef = &$crate::__private::PluginDef {
                    package: $package,
                    version: $crate::__export_or!($($version)?; "0.0.0"),
                    requires: &[$($($requires),*)?],
                    settings: $crate::__export_or!($($settings)?; ""),
                    workers: &[$($(
                        $crate::__private::WorkerDef {
                            name: $worker_name,
                            make: || -> ::std::boxed::Box<dyn $crate::Worker> { ::std::boxed::Box::new($worker) },
                            logger: || $crate::__private::logger_name_of(&|| $worker),
                        }
                    ),*)?],
                    tasks: &$crate::__export_tasks!([] $($($tasks)*)?),
                };

                fn state() -> &'static $crate::__private::State {
                    static STATE: $crate::__private::State = $crate::__private::State::new();
                    &STATE
                }

                fn with_instances<R>(f: impl ::core::ops::FnOnce(&$crate::__private::Instances) -> R) -> R {
                    ::std::thread_local! {
                        static INSTANCES: $crate::__private::Instances = const { $crate::__private::Instances::new() };
                    }
                    INSTANCES.with(f)
                }
            }

            $crate::__private::entry::<RexExport>()
        }
    };
}

/// `__export_or!(; default)` is `default`; `__export_or!(value; default)` is `value`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_or {
    (; $default:expr) => {
        $default
    };
    ($value:expr; $default:expr) => {
        $value
    };
}

/// Munch `"name" => fn_path` and `"name" => { run: f, key: value, ... }` entries into an array
/// of `TaskDef`s.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_tasks {
    ([$($done:expr,)*]) => {
        [$($done,)*]
    };
    ([$($done:expr,)*] $name:literal => { run: $run:expr $(, $key:ident : $value:expr)* $(,)? } $(, $($rest:tt)*)?) => {
        $crate::__export_tasks!([$($done,)* $crate::__private::TaskDef {
            name: $name,
            run: $run,
            meta: $crate::__private::TaskMeta { $($key: $value,)* ..$crate::__private::TaskMeta::DEFAULT },
        },] $($($rest)*)?)
    };
    ([$($done:expr,)*] $name:literal => { $($other:tt)* } $(, $($rest:tt)*)?) => {
        ::core::compile_error!(::core::concat!(
            "task ", $name, ": expected `{ run: <fn>, hint: \"...\", help: \"...\", usage: \"...\" }` with `run` first"
        ))
    };
    ([$($done:expr,)*] $name:literal => $run:expr $(, $($rest:tt)*)?) => {
        $crate::__export_tasks!([$($done,)* $crate::__private::TaskDef {
            name: $name,
            run: $run,
            meta: $crate::__private::TaskMeta::DEFAULT,
        },] $($($rest)*)?)
    };
}
