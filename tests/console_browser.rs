//! The operator console in a real Chromium (WebDriver): what an operator sees and clicks.
//! Skipped with a message when `REX_TEST_CHROMEDRIVER` is unset (`.ci/run` sets it).
//! Screenshots of the pages go to `target/console-screenshots/` (the docs use them).

use std::time::Duration;

use fantoccini::Locator;
use rex_tests::browser::{Browser, screenshot_dir};
use rex_tests::console::Dashboard;
use rex_tests::{Project, Running};

const WAIT: Duration = Duration::from_secs(60);

/// A project with a `jobs` queue on the sleep worker (a bad `ms` fails it, once for good).
fn project() -> Project {
    Project::new(
        "project: rex.asynctask_demo\nparameters:\n  log_level: INFO\n  asynctask_workers:\n    jobs:\n      worker: demo_sleep_worker\n      max_attempts: 1\n",
    )
}

/// `rex asynctask-dashboard` on a free port; returns it and its base URL.
fn dashboard(project: &Project, extra: &[&str]) -> (Running, String) {
    let console = Dashboard::start(project, extra);
    (console.process, console.url)
}

/// Run the queues' workers until every queue is empty (tasks processed or failed).
fn drain(project: &Project, extra: &[&str]) {
    let mut args = vec!["asynctask-workers", "--halt-when-empty"];
    args.extend_from_slice(extra);
    let (code, out, err) = project.run(&args);
    assert_eq!(code, 0, "workers:\n{out}\n{err}");
}

/// `asynctask-queues --json` row of `queue`.
fn queue_row(project: &Project, queue: &str) -> serde_json::Value {
    let out = project.ok(&["asynctask-queues", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("queues json");
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == queue).cloned())
        .unwrap_or(serde_json::Value::Null)
}

async fn click(browser: &Browser, css: &str) {
    browser.wait_for(css).await.click().await.expect("click");
}

/// Click the button whose text is `text` (inside a form).
async fn click_button(browser: &Browser, text: &str) {
    let xpath = format!("//button[normalize-space(.)='{text}']");
    browser
        .client
        .find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no button {text:?}: {e}"))
        .click()
        .await
        .expect("click");
}

fn field(queue: &str, field: &str) -> String {
    format!("tr[data-queue='{queue}'] td[data-field='{field}']")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_counts_and_follows_them_live() {
    let Some(browser) = Browser::start("overview").await else {
        return;
    };
    let project = project();
    project.submit("jobs", &[r#"{"ms": 1}"#, r#"{"ms": 2}"#, r#"{"ms": 3}"#]);
    let (_console, url) = dashboard(&project, &[]);
    browser.open(&format!("{url}/")).await;
    assert_eq!(browser.text(&field("jobs", "ready")).await, "3");
    assert_eq!(browser.text(&field("jobs", "paused")).await, "active");
    // The page follows the queue without a reload.
    project.submit("jobs", &[r#"{"ms": 4}"#, r#"{"ms": 5}"#]);
    browser
        .wait_text(&field("jobs", "ready"), |t| t == "5")
        .await;
    browser
        .screenshot(&screenshot_dir().join("overview.png"))
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_opened_retried_and_then_processed() {
    let Some(browser) = Browser::start("retry").await else {
        return;
    };
    let project = project();
    project.submit("jobs", &[r#"{"ms": "not a number"}"#]);
    drain(&project, &[]);
    assert_eq!(queue_row(&project, "jobs")["failed"], 1);
    let (_console, url) = dashboard(&project, &[]);

    browser.open(&format!("{url}/failed")).await;
    click(&browser, "table a[href^='/tasks/']").await;
    // The task page has loaded (the failed page also has a table to read from).
    browser.wait_for("pre.payload").await;
    let reason = browser.text("table tbody tr td:nth-child(5)").await;
    assert!(
        reason.contains("payload.ms must be a non-negative integer"),
        "{reason}"
    );
    assert!(browser.text("pre.payload").await.contains("not a number"));
    browser.screenshot(&screenshot_dir().join("task.png")).await;
    click_button(&browser, "Retry").await;
    browser.wait_text("h1 .badge", |t| t == "pending").await;
    let row = queue_row(&project, "jobs");
    assert_eq!(
        (row["failed"].as_u64(), row["ready"].as_u64()),
        (Some(0), Some(1))
    );

    // Processed now by a worker that accepts it.
    drain(
        &project,
        &[r#"--set=asynctask_workers={"jobs": "demo_foo_worker"}"#],
    );
    browser.open(&format!("{url}/")).await;
    browser
        .wait_text(&field("jobs", "ready"), |t| t == "0")
        .await;
    assert_eq!(browser.text(&field("jobs", "failed")).await, "0");

    // Its history: the failed attempt and the processed one, minute by minute.
    browser.open(&format!("{url}/queues/jobs")).await;
    click(&browser, "details summary").await;
    browser.wait_for("table#history tbody tr").await;
    let drawn = browser
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               document.querySelector("img.chart").decode().then(() => done("drawn"), e => done(String(e)));"#,
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(drawn, "drawn");
    browser
        .screenshot(&screenshot_dir().join("history.png"))
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_bulk_purge_touches_only_the_filtered_tasks() {
    let Some(browser) = Browser::start("bulk purge").await else {
        return;
    };
    let project = project();
    project.submit(
        "jobs",
        &[
            r#"{"ms": "alpha one"}"#,
            r#"{"ms": "alpha two"}"#,
            r#"{"ms": "bravo"}"#,
        ],
    );
    drain(&project, &[]);
    assert_eq!(queue_row(&project, "jobs")["failed"], 3);
    let (_console, url) = dashboard(&project, &[]);

    browser.open(&format!("{url}/failed?text=alpha")).await;
    click_button(&browser, "Purge all matching…").await;
    // The confirmation names the count it will touch (waited for: until the click's page
    // loads, the failed page's heading is there).
    let heading = browser
        .wait_text("main h1", |t| t.starts_with("Purge"))
        .await;
    assert_eq!(heading, "Purge 2 failed tasks?");
    browser
        .screenshot(&screenshot_dir().join("confirm.png"))
        .await;
    click_button(&browser, "Purge 2").await;
    let done = browser
        .wait_text("main p", |t| t.starts_with("Purged"))
        .await;
    assert_eq!(done, "Purged 2 failed tasks.");

    let failed = project.failed("jobs");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["payload"]["ms"], "bravo");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_paused_and_resumed_from_its_page() {
    let Some(browser) = Browser::start("pause").await else {
        return;
    };
    let project = project();
    let (_console, url) = dashboard(&project, &[]);
    browser.open(&format!("{url}/queues/jobs")).await;
    click_button(&browser, "Pause").await;
    browser.wait_text("h1 .badge", |t| t == "paused").await;
    assert_eq!(queue_row(&project, "jobs")["paused"], true);

    // Paused: a master started now claims nothing of it.
    let payloads: Vec<String> = (0..5).map(|i| format!(r#"{{"ms": {i}}}"#)).collect();
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    project.submit("jobs", &payloads);
    let mut master = Running::spawn(project.rex(&["asynctask-workers", "--halt-when-empty"]));
    master.wait_for(WAIT, |l| l.contains("jobs"));
    assert!(
        !master.seen.iter().any(|l| l.contains("SLEEP processed")),
        "{:?}",
        master.seen
    );
    browser
        .screenshot(&screenshot_dir().join("queue.png"))
        .await;

    click_button(&browser, "Resume").await;
    browser.wait_text("h1 .badge", |t| t == "active").await;
    // Resumed: every task is processed and the master halts on the empty queue.
    let (code, lines) = master.finish(WAIT);
    assert_eq!(code, Some(0), "{lines:?}");
    let processed = lines
        .iter()
        .filter(|l| l.contains("SLEEP processed"))
        .count();
    assert_eq!(processed, 5, "{lines:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_in_a_payload_stays_text() {
    let Some(browser) = Browser::start("escaping").await else {
        return;
    };
    let project = project();
    project.submit(
        "jobs",
        &[r#"{"x": "<script>alert(1)</script>", "ms": "<b>bold</b>"}"#],
    );
    drain(&project, &[]);
    let (_console, url) = dashboard(&project, &[]);
    for page in ["/failed", "/queues/jobs?state=failed"] {
        browser.open(&format!("{url}{page}")).await;
        browser.wait_for("table").await;
        assert!(
            browser.client.get_alert_text().await.is_err(),
            "an alert opened on {page}"
        );
        assert!(
            !browser.has("b").await,
            "markup from a payload was rendered on {page}"
        );
    }
    browser.open(&format!("{url}/failed")).await;
    click(&browser, "table a[href^='/tasks/']").await;
    let payload = browser.text("pre.payload").await;
    assert!(payload.contains("<script>alert(1)</script>"), "{payload}");
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "an alert opened"
    );
    assert!(!browser.has("main script").await);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_shows_no_action() {
    let Some(browser) = Browser::start("read-only").await else {
        return;
    };
    let project = project();
    project.submit("jobs", &[r#"{"ms": "bad"}"#]);
    drain(&project, &[]);
    project.submit("jobs", &[r#"{"ms": 1}"#]);
    let (_console, url) = dashboard(&project, &["--read-only"]);
    browser.open(&format!("{url}/failed")).await;
    click(&browser, "table a[href^='/tasks/']").await;
    browser.wait_for("pre.payload").await;
    let task_page = browser.client.current_url().await.expect("url").to_string();
    for page in [
        format!("{url}/"),
        format!("{url}/queues/jobs"),
        format!("{url}/failed"),
        format!("{url}/schedules"),
        task_page,
    ] {
        browser.open(&page).await;
        browser.wait_for("main").await;
        assert!(
            !browser.has("form[method='post']").await,
            "an action on {page}"
        );
        assert!(
            !browser.has("button").await || !has_action(&browser).await,
            "{page}"
        );
    }
    browser.close().await;
}

/// Whether any button of the page names an action.
async fn has_action(browser: &Browser) -> bool {
    for button in browser
        .client
        .find_all(Locator::Css("button"))
        .await
        .expect("buttons")
    {
        let text = button.text().await.unwrap_or_default();
        if ["Retry", "Purge", "Pause", "Resume", "Cancel", "Run now"]
            .iter()
            .any(|action| text.contains(action))
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_enqueues_once_per_click_and_a_paused_schedule_shows_paused() {
    let Some(browser) = Browser::start("schedules").await else {
        return;
    };
    let project = Project::new(
        "project: rex.asynctask_demo\nparameters:\n  log_level: INFO\n  asynctask_scheduled_workers:\n    - worker: demo_foo_worker\n      cron: \"0 3 * * *\"\n",
    );
    let (_console, url) = dashboard(&project, &[]);
    let queue = "scheduled_0_demo_foo_worker";
    let ready = || queue_row(&project, queue)["ready"].as_u64().unwrap_or(0);
    browser.open(&format!("{url}/schedules")).await;
    browser
        .wait_text("td[data-field='state']", |t| t == "active")
        .await;
    // The page's form sent twice, as a double click or a resent form would.
    let sent = browser
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const form = document.querySelector("form[action$='/run']");
               const send = () => fetch(form.action, {method: "POST", redirect: "manual",
                   body: new URLSearchParams(new FormData(form))});
               send().then(send).then(() => done("sent"), e => done(String(e)));"#,
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(sent, "sent");
    assert_eq!(ready(), 1, "one task for the click sent twice");
    // And a third time, by the button of the same form: still that click.
    click_button(&browser, "Run now").await;
    browser
        .wait_text("#ran", |t| t.contains("enqueued already"))
        .await;
    assert_eq!(ready(), 1);
    // The page after it has new forms: a new click, a new task.
    click_button(&browser, "Run now").await;
    let note = browser
        .wait_text("#ran", |t| t.contains("enqueued task"))
        .await;
    assert!(note.contains("enqueued task"), "{note}");
    assert_eq!(ready(), 2);

    click_button(&browser, "Pause").await;
    browser
        .wait_text("td[data-field='state']", |t| t == "paused")
        .await;
    browser
        .screenshot(&screenshot_dir().join("schedules.png"))
        .await;
    click_button(&browser, "Resume").await;
    browser
        .wait_text("td[data-field='state']", |t| t == "active")
        .await;
    browser.close().await;
}
