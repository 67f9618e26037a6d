//! What a completed attempt may hand to the transport: follow-ups and a result within
//! `asynctask_max_payload_size` (a completion over it fails its task rather than the batch).

use rex_transport::Settlement;

/// Follow-ups within `max` bytes of JSON, as `asynctask-submit` checks its own.
pub(super) fn check_sizes(done: &Settlement, max: usize) -> rex_transport::Result<()> {
    for submit in done.submits() {
        let size = serde_json::to_string(&submit.payload).map_or(usize::MAX, |t| t.len());
        rex_transport::check_size(size, max)?;
    }
    Ok(())
}

/// A result within `max` bytes of JSON too: it is kept with the task.
pub(super) fn check_result(done: &Settlement, max: usize) -> Result<(), String> {
    let Settlement::Complete {
        result: Some(result),
        ..
    } = done
    else {
        return Ok(());
    };
    let size = serde_json::to_string(result).map_or(usize::MAX, |t| t.len());
    if size > max {
        return Err(format!(
            "the worker's result is {size} bytes of JSON, more than asynctask_max_payload_size ({max})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_transport::Lease;

    fn done(result: serde_json::Value) -> Settlement {
        Settlement::Complete {
            lease: Lease { id: 1, token: 1 },
            submits: vec![],
            result: Some(result),
        }
    }

    #[test]
    fn a_result_over_the_payload_limit_is_refused_with_its_size() {
        assert_eq!(check_result(&done(serde_json::json!({"n": 1})), 7), Ok(()));
        assert_eq!(
            check_result(&done(serde_json::json!({"n": 10})), 7),
            Err(
                "the worker's result is 8 bytes of JSON, more than asynctask_max_payload_size (7)"
                    .into()
            )
        );
    }
}
