use serde_json::json;

use super::*;

fn workers() -> Vec<String> {
    ["ctl_executor", "demo_foo_worker", "demo_bar_worker"]
        .map(String::from)
        .to_vec()
}

fn source(origin: &str, values: serde_json::Value, is_parameter: bool) -> Source {
    Source {
        origin: origin.into(),
        values: values.as_object().cloned().unwrap_or_default(),
        is_parameter,
    }
}

fn build(sources: &[Source]) -> Result<Settings> {
    let specs: Vec<&SettingSpec> = SPECS.iter().collect();
    let workers = workers();
    Settings::build(&specs, sources, &Context { workers: &workers })
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = build(&[]).unwrap();
    assert_eq!(s.poll_interval(), Duration::from_millis(500));
    assert_eq!(s.check_child_interval(), Duration::from_millis(1000));
    assert_eq!(s.shutdown_grace(), Duration::from_secs(30));
    assert!(s.queues().is_empty());
    assert_eq!(s.transport_uri(), None);
}

#[test]
fn workers_merge_shallowly_and_null_disables_a_queue() {
    let s = build(&[
        source("demo settings.yaml", json!({"asynctask_workers": {"foo": "demo_foo_worker"}}), false),
        source("--set", json!({"asynctask_workers": "{\"some_queue\": {\"worker\": \"demo_bar_worker\", \"concurrency\": 2}}"}), true),
    ])
    .unwrap();
    let queues = s.queues();
    assert_eq!(
        queues.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(),
        ["foo", "some_queue"]
    );
    assert_eq!(queues[1].concurrency, 2);
    assert_eq!(queues[1].retry, RetryPolicy::default());

    let s = build(&[
        source(
            "demo settings.yaml",
            json!({"asynctask_workers": {"foo": "demo_foo_worker"}}),
            false,
        ),
        source("--set", json!({"asynctask_workers": "{}"}), true),
    ])
    .unwrap();
    assert_eq!(
        s.queues().len(),
        1,
        "an empty map merged over the defaults changes nothing"
    );

    let s = build(&[
        source(
            "demo settings.yaml",
            json!({"asynctask_workers": {"foo": "demo_foo_worker"}}),
            false,
        ),
        source(
            "--set",
            json!({"asynctask_workers": "{\"foo\": null}"}),
            true,
        ),
    ])
    .unwrap();
    assert!(s.queues().is_empty());
}

#[test]
fn unknown_worker_lists_the_valid_ones() {
    let err = build(&[source(
        "--set",
        json!({"asynctask_workers": {"some_queue": "doesntexist"}}),
        true,
    )])
    .unwrap_err();
    assert_eq!(
        err.render(),
        "Expected one of:\n    ctl_executor, demo_foo_worker, demo_bar_worker\nGot:\n    \"doesntexist\"\n\
         While validating mapping value for key:\n    \"some_queue\"\nWhile validating setting:\n    asynctask_workers"
    );
}

#[test]
fn bad_queue_names_are_rejected_at_load_time() {
    let err = build(&[source(
        "--set",
        json!({"asynctask_workers": {"Bad__Name": "demo_foo_worker"}}),
        true,
    )])
    .unwrap_err();
    assert!(
        err.render()
            .starts_with("\"Bad__Name\" is not a properly-formatted queue name"),
        "{}",
        err.render()
    );
}

#[test]
fn record_fields_are_typed() {
    let s = build(&[source(
        "rex.yaml",
        json!({"asynctask_workers": {"foo": {"worker": "demo_foo_worker", "max_attempts": 3, "retry_delay_min": "10ms",
            "retry_delay_max": "1s", "timeout": "5s", "rate_max_calls": 10, "rate_period": 2}}}),
        true,
    )])
    .unwrap();
    let q = &s.queues()[0];
    assert_eq!(q.retry.max_attempts, 3);
    assert_eq!(q.retry.max_crashes, 3);
    assert_eq!(q.retry.delay_min, Duration::from_millis(10));
    assert_eq!(q.timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        q.rate,
        Some(RateLimit {
            max_calls: 10,
            period: Duration::from_secs(2)
        })
    );

    let err = build(&[source(
        "x",
        json!({"asynctask_workers": {"foo": {"worker": "demo_foo_worker", "colour": 1}}}),
        true,
    )])
    .unwrap_err();
    assert!(
        err.render()
            .starts_with("Got unexpected field:\n    colour"),
        "{}",
        err.render()
    );
    let err = build(&[source(
        "x",
        json!({"asynctask_workers": {"foo": {"worker": "demo_foo_worker", "timeout": "soon"}}}),
        true,
    )])
    .unwrap_err();
    assert!(
        err.render()
            .contains("While validating field:\n    timeout"),
        "{}",
        err.render()
    );
}

#[test]
fn command_line_strings_are_coerced_by_type() {
    let s = build(&[source(
        "--set",
        json!({"asynctask_workers_poll_interval": "100", "log_level": "debug"}),
        true,
    )])
    .unwrap();
    assert_eq!(s.poll_interval(), Duration::from_millis(100));
    assert_eq!(s.log_config().level, crate::logging::Level::Debug);
    let err = build(&[source(
        "--set",
        json!({"asynctask_workers_poll_interval": "0"}),
        true,
    )])
    .unwrap_err();
    assert!(
        err.render()
            .starts_with("Expected an integer from 1 to 3600000"),
        "{}",
        err.render()
    );
}

#[test]
fn unknown_settings_name_their_source() {
    let err = build(&[source(
        "rex.yaml parameters",
        json!({"colour": "blue"}),
        true,
    )])
    .unwrap_err();
    assert_eq!(
        err.render(),
        "Got unknown setting:\n    colour\nIn\n    rex.yaml parameters"
    );
}

#[test]
fn set_arguments_follow_rex_ctl() {
    assert_eq!(
        parse_set_arg("a-b=c=d").unwrap(),
        ("a_b".into(), json!("c=d"))
    );
    assert_eq!(parse_set_arg("flag").unwrap(), ("flag".into(), json!(true)));
    assert!(parse_set_arg("=x").is_err());
}

#[test]
fn retry_policy_budgets_errors_and_crashes_separately() {
    let policy = RetryPolicy {
        max_attempts: 3,
        max_crashes: 1,
        delay_min: Duration::from_millis(10),
        delay_max: Duration::from_secs(1),
    };
    let task = |attempt, crashes| rex_transport::Task {
        id: 1,
        queue: "foo".into(),
        payload: Default::default(),
        attempt,
        errors: 0,
        crashes,
        lease_token: 1,
        owner: "o".into(),
        lease_until: std::time::SystemTime::now(),
        created_at: std::time::SystemTime::now(),
        lost: false,
        unwitnessed_returns: 0,
    };
    assert!(
        policy
            .retry_at(&task(1, 0), rex_transport::FailureKind::Error)
            .is_some()
    );
    assert!(
        policy
            .retry_at(&task(3, 0), rex_transport::FailureKind::Error)
            .is_none()
    );
    assert!(
        policy
            .retry_at(&task(1, 0), rex_transport::FailureKind::Crash)
            .is_none(),
        "one crash allowed in all"
    );
    for attempt in 1..10 {
        let d = policy.backoff(attempt);
        assert!(
            d >= policy.delay_min && d <= policy.delay_max,
            "{attempt}: {d:?}"
        );
    }
}

/// The first line of the error a `--set` of `name` to `value` gives, or `None` if accepted.
fn refusal(name: &str, value: serde_json::Value) -> Option<String> {
    build(&[source("--set", json!({ name: value }), true)])
        .err()
        .map(|e| e.render().lines().next().unwrap_or_default().to_string())
}

#[test]
fn every_timing_setting_has_a_range() {
    let lease = "asynctask_lease_duration";
    let expected = Some("Expected a duration from 1s to 7d".to_string());
    assert_eq!(refusal(lease, json!("0s")), expected);
    assert_eq!(refusal(lease, json!("1ms")), expected);
    assert_eq!(refusal(lease, json!("8d")), expected);
    assert_eq!(refusal(lease, json!("1s")), None);
    assert_eq!(refusal(lease, json!(604800)), None);
    // Values too large to represent are refused, never wrapped or a panic.
    for huge in [json!("1e300"), json!(1e300), json!("9999999999999h")] {
        assert_eq!(
            refusal(lease, huge),
            Some("Expected a duration of at most 3650d".to_string())
        );
    }
    for bad in [json!("nan"), json!("-5"), json!(-1)] {
        assert!(refusal(lease, bad).is_some());
    }
    assert_eq!(
        refusal("asynctask_workers_shutdown_grace", json!("0s")),
        None
    );
    assert_eq!(
        refusal("asynctask_workers_shutdown_grace", json!("25h")),
        Some("Expected a duration from 0s to 1d".to_string())
    );
    for name in [
        "asynctask_workers_poll_interval",
        "asynctask_workers_check_child_interval",
    ] {
        let expected = Some("Expected an integer from 1 to 3600000".to_string());
        assert_eq!(refusal(name, json!(0)), expected);
        assert_eq!(refusal(name, json!(3_600_001)), expected);
        assert_eq!(refusal(name, json!(1)), None);
    }
}

#[test]
fn queue_durations_have_ranges_and_retry_delays_an_order() {
    let queue = |record: serde_json::Value| {
        let mut record = record;
        record["worker"] = json!("demo_foo_worker");
        refusal("asynctask_workers", json!({ "q1": record }))
    };
    assert_eq!(
        queue(json!({"retry_delay_min": "10m", "retry_delay_max": "1s"})),
        Some("retry_delay_min must not exceed retry_delay_max".to_string())
    );
    assert_eq!(
        queue(json!({"retry_delay_min": "1s", "retry_delay_max": "1s"})),
        None
    );
    assert_eq!(
        queue(json!({"timeout": "0s"})),
        Some("Expected a duration from 1ms to 7d".to_string())
    );
    assert_eq!(
        queue(json!({"retry_delay_max": "31d"})),
        Some("Expected a duration from 1ms to 30d".to_string())
    );
    assert_eq!(
        queue(json!({"rate_max_calls": 1, "rate_period": 1e30})),
        Some("Expected a duration of at most 3650d".to_string())
    );
}

#[test]
fn a_schedule_that_matches_no_date_is_refused() {
    let schedule = |fields: serde_json::Value| {
        let mut fields = fields;
        fields["worker"] = json!("demo_foo_worker");
        refusal("asynctask_scheduled_workers", json!([fields]))
    };
    let never = Some("The schedule matches no date at all, such as 30 February".to_string());
    assert_eq!(schedule(json!({"month": 2, "day": 30})), never);
    assert_eq!(schedule(json!({"month": "apr", "day": 31})), never);
    assert_eq!(schedule(json!({"cron": "0 0 31 2 *"})), never);
    // Rare but real dates, and schedules that have merely ended, are accepted.
    assert_eq!(schedule(json!({"month": 2, "day": 29})), None);
    assert_eq!(schedule(json!({"year": 2020, "month": 2, "day": 29})), None);
    assert_eq!(schedule(json!({"hour": 3, "end_date": "2021-01-01"})), None);
}

#[test]
fn parameters_with_double_quotes_are_shown_as_typed() {
    let set = source(
        "--set",
        json!({
            "asynctask_workers": r#"{"foo": "nope"}"#,
            "log_level": "INFO",
            "log_levels": r#"{"it's": "DEBUG"}"#,
            "log_format": "a\\\"b",
        }),
        true,
    );
    assert_eq!(
        describe_parameters(&[set]).as_deref(),
        Some(
            "asynctask_workers: '{\"foo\": \"nope\"}'\n\
             log_format: \"a\\\\\\\"b\"\n\
             log_level: \"INFO\"\n\
             log_levels: \"{\\\"it's\\\": \\\"DEBUG\\\"}\""
        )
    );
}
