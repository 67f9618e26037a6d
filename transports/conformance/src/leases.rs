//! Leases and fencing: a claim leases the task, settlements quoting an old lease change
//! nothing, and the lease bookkeeping (`owned_by`, `expired`, `renew`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rex_transport::{Failure, Payload, QueueCounts, Submit, Task, TaskId, Transport};
use serde_json::json;

use crate::{LEASE, claim, counts, ids, submit, unique};

/// A claim leases the task: it is running, and the next claim gets the next task.
pub async fn case_claim_leases(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("lease"), unique("owner"));
    let first = submit(&t, &queue, json!({"n": 1})).await;
    let second = submit(&t, &queue, json!({"n": 2})).await;
    let before = SystemTime::now();
    let a = claim(&t, &queue, &owner).await.expect("first");
    assert_eq!(a.id, first);
    assert!(
        a.lease_until >= before + LEASE - Duration::from_secs(5),
        "lease_until is now + lease"
    );
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            ready: 1,
            running: 1,
            ..QueueCounts::default()
        }
    );
    let b = claim(&t, &queue, &owner).await.expect("second");
    assert_eq!(b.id, second, "a leased task is not claimed again");
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 2,
            ..QueueCounts::default()
        }
    );
    assert!(claim(&t, &queue, &owner).await.is_none());
}

/// Settlements quoting an old lease are refused and change nothing.
pub async fn case_stale_lease(t: Arc<dyn Transport>) {
    let (queue, other, owner) = (unique("stale"), unique("other"), unique("owner"));
    let id = submit(&t, &queue, json!({})).await;
    let old = claim(&t, &queue, &owner).await.expect("claimable");
    assert!(
        t.release(&old.lease(), "shutting down")
            .await
            .expect("release")
    );
    let new = claim(&t, &queue, &owner)
        .await
        .expect("released tasks are claimable");
    assert_eq!(new.id, id);
    assert_ne!(
        new.lease_token, old.lease_token,
        "every claim has a new lease token"
    );

    let submits = [Submit {
        queue: other.clone(),
        payload: Payload::new(),
    }];
    assert!(!t.complete(&old.lease(), &submits).await.expect("complete"));
    assert!(
        !t.fail(&old.lease(), &Failure::crash("late"), None)
            .await
            .expect("fail")
    );
    assert!(
        !t.fail(
            &old.lease(),
            &Failure::error("late"),
            Some(SystemTime::now())
        )
        .await
        .expect("fail")
    );
    assert!(!t.release(&old.lease(), "late").await.expect("release"));
    assert_eq!(
        counts(&t, &queue).await,
        QueueCounts {
            running: 1,
            ..QueueCounts::default()
        }
    );
    assert_eq!(
        counts(&t, &other).await,
        QueueCounts::default(),
        "a stale completion submits nothing"
    );
    assert_eq!(ids(&t.owned_by(&owner).await.expect("owned_by")), [id]);

    assert!(t.complete(&new.lease(), &[]).await.expect("complete"));
    assert!(
        !t.complete(&new.lease(), &[]).await.expect("complete"),
        "a lease settles once"
    );
    assert_eq!(counts(&t, &queue).await, QueueCounts::default());
}

/// `owned_by` lists exactly the running tasks of one owner.
pub async fn case_owned_by(t: Arc<dyn Transport>) {
    let (queue, alice, bob) = (unique("owned"), unique("alice"), unique("bob"));
    for _ in 0..3 {
        submit(&t, &queue, json!({})).await;
    }
    let a1 = claim(&t, &queue, &alice).await.expect("claimable");
    let b1 = claim(&t, &queue, &bob).await.expect("claimable");
    let a2 = claim(&t, &queue, &alice).await.expect("claimable");

    let mine = t.owned_by(&alice).await.expect("owned_by");
    assert_eq!(ids(&mine), [a1.id, a2.id]);
    assert!(
        mine.iter()
            .all(|task| task.owner == alice && task.queue == queue)
    );
    assert_eq!(mine[0], a1, "the same task as claimed");
    assert_eq!(ids(&t.owned_by(&bob).await.expect("owned_by")), [b1.id]);
    assert!(
        t.owned_by(&unique("nobody"))
            .await
            .expect("owned_by")
            .is_empty()
    );

    assert!(t.complete(&a1.lease(), &[]).await.expect("complete"));
    assert!(t.release(&b1.lease(), "bye").await.expect("release"));
    assert_eq!(ids(&t.owned_by(&alice).await.expect("owned_by")), [a2.id]);
    assert!(
        t.owned_by(&bob).await.expect("owned_by").is_empty(),
        "only running tasks"
    );
}

/// `expired` lists running tasks whose lease has passed.
pub async fn case_expired(t: Arc<dyn Transport>) {
    let (queue, owner) = (unique("expired"), unique("owner"));
    submit(&t, &queue, json!({})).await;
    submit(&t, &queue, json!({})).await;
    let short = t
        .claim(&queue, &owner, Duration::from_millis(50))
        .await
        .expect("claim")
        .expect("claimable");
    let long = claim(&t, &queue, &owner).await.expect("claimable");
    let mine = |tasks: Vec<Task>| -> Vec<TaskId> {
        tasks
            .into_iter()
            .filter(|task| task.queue == queue)
            .map(|task| task.id)
            .collect()
    };
    let expired: Vec<TaskId> = mine(
        t.expired(SystemTime::now() - Duration::from_secs(60))
            .await
            .expect("expired"),
    );
    assert!(expired.is_empty());

    tokio::time::sleep(Duration::from_millis(100)).await;
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [short.id]);
    let expired: Vec<TaskId> = mine(
        t.expired(SystemTime::now() + 2 * LEASE)
            .await
            .expect("expired"),
    );
    assert_eq!(expired, [short.id, long.id]);

    assert!(
        t.fail(&short.lease(), &Failure::crash("lease expired"), None)
            .await
            .expect("fail")
    );
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert!(expired.is_empty(), "only running tasks expire");
}

/// `renew` extends the leases of the named owners only.
pub async fn case_renew(t: Arc<dyn Transport>) {
    let (queue, alive, dead) = (unique("renew"), unique("alive"), unique("dead"));
    submit(&t, &queue, json!({})).await;
    submit(&t, &queue, json!({})).await;
    let short = Duration::from_millis(50);
    let kept = t
        .claim(&queue, &alive, short)
        .await
        .expect("claim")
        .expect("claimable");
    let lost = t
        .claim(&queue, &dead, short)
        .await
        .expect("claim")
        .expect("claimable");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mine = |tasks: Vec<Task>| -> Vec<TaskId> {
        tasks
            .into_iter()
            .filter(|task| task.queue == queue)
            .map(|task| task.id)
            .collect()
    };
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [kept.id, lost.id]);

    assert_eq!(
        t.renew(&[alive.clone(), unique("nobody")], LEASE)
            .await
            .expect("renew"),
        1
    );
    let expired: Vec<TaskId> = mine(t.expired(SystemTime::now()).await.expect("expired"));
    assert_eq!(expired, [lost.id]);
    let renewed = t.owned_by(&alive).await.expect("owned_by");
    assert!(renewed[0].lease_until > SystemTime::now() + LEASE - Duration::from_secs(5));
    assert_eq!(
        renewed[0].lease_token, kept.lease_token,
        "renewing keeps the lease token"
    );
    assert!(t.complete(&kept.lease(), &[]).await.expect("complete"));
    assert_eq!(t.renew(&[], LEASE).await.expect("renew"), 0);
}
