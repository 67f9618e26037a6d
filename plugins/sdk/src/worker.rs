//! The [`Worker`] trait.

use crate::{Context, Payload, Result};

/// Processes the tasks of one queue. Its log records appear under the type's name
/// ([`logger_name`]).
///
/// The [`export!`](crate::export) macro registers each worker under a name and constructs it
/// lazily from the expression given there, at most once per thread (the host drives a plugin
/// from one thread at a time), so a worker may keep state between tasks and need not be `Send`.
///
/// `process` may return an [`Error`](crate::Error) (the task fails with that message) or panic
/// (the panic is caught and reported with its message and location; the worker instance stays
/// in place for the next task).
pub trait Worker {
    /// Process one task. `ctx` identifies the task, logs under [`logger_name`] and collects
    /// follow-up submissions, which the host applies atomically with the task's completion.
    fn process(&mut self, ctx: &mut Context, payload: Payload) -> Result<()>;
}

/// The logger name of a worker type: its name without module path or generic arguments
/// (`FooWorker`), as in the original, where loggers were named after classes. Fixed by the
/// type, so the host can learn it from the manifest without constructing the worker.
pub fn logger_name<W: Worker + ?Sized>() -> &'static str {
    short_type_name(std::any::type_name::<W>())
}

/// [`logger_name`] of the type a constructor returns, without calling it (for `export!`).
#[doc(hidden)]
pub fn logger_name_of<W: Worker, F: FnOnce() -> W>(_make: &F) -> &'static str {
    logger_name::<W>()
}

/// `a::b::Foo<c::D>` -> `Foo`.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name("demo::FooWorker"), "FooWorker");
        assert_eq!(short_type_name("FooWorker"), "FooWorker");
        assert_eq!(short_type_name("a::b::Gen<c::D, e::F>"), "Gen");
    }
}
