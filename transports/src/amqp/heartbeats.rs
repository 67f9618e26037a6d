//! Masters' heartbeats. RabbitMQ keeps no values by key, and lists no queue names over AMQP
//! (only the management plugin's HTTP API does), so the records of every master go to one
//! queue, `P._masters`, where messages can expire:
//!
//! * a beat publishes the whole record (JSON) with the message expiration set to the time
//!   left until its `expires_at` (transient: after a broker restart the masters' next beats
//!   publish them again), and waits for the broker's confirm;
//! * [`masters`](crate::Transport::masters) reads the queue (taking its messages, then giving
//!   them back in place), keeps the newest record of each id that has not expired, and
//!   acknowledges — deletes — the rest: records replaced by a newer one, expired ones (RabbitMQ
//!   drops an expired message only when it reaches the head of the queue), and anything that
//!   is not a record;
//! * [`forget_master`](crate::Transport::forget_master) reads it the same way and deletes every
//!   record of the id.
//!
//! So several masters beat at once without coordination, one publish per beat, and the queue
//! holds about one record per master when it is listed now and then (`x-max-length` 10,000
//! bounds it, dropping the oldest, when nobody lists it). As with every listing on RabbitMQ,
//! two readers at the same instant may each miss the records the other holds for a moment, and
//! a record held by a reader while it is forgotten survives until it expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use lapin::BasicProperties;
use lapin::types::DeliveryTag;

use super::Inner;
use crate::{MasterRecord, Result};

impl Inner {
    pub(super) async fn beat(self: Arc<Self>, record: MasterRecord) -> Result<()> {
        let session = self.session().await?;
        let name = self.declare_masters(&session).await?;
        let data = serde_json::to_vec(&record)
            .map_err(|e| self.backend(format_args!("cannot encode: {e}")))?;
        let left = record
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let properties = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/json".into())
            .with_expiration(left.as_millis().max(1).to_string().into());
        let confirmation = self
            .publish_with(&session, "", &name, &data, Some(properties), true)
            .await?;
        self.require_ack(confirmation, "", &name)
    }

    pub(super) async fn forget_master(self: Arc<Self>, id: String) -> Result<()> {
        self.read_records(Some(&id)).await.map(drop)
    }

    pub(super) async fn masters(self: Arc<Self>) -> Result<Vec<MasterRecord>> {
        self.read_records(None).await
    }

    /// The live records, newest of each id, by id; every other message is deleted, and so are
    /// the records of `forget`.
    async fn read_records(&self, forget: Option<&str>) -> Result<Vec<MasterRecord>> {
        let session = self.session().await?;
        let Some((channel, messages)) = self.browse(&session, &self.masters_name()).await? else {
            return Ok(Vec::new()); // no master ever beat
        };
        let now = SystemTime::now();
        let mut newest: BTreeMap<String, (MasterRecord, DeliveryTag)> = BTreeMap::new();
        let mut doomed = Vec::new();
        for (tag, data) in messages {
            let record = serde_json::from_slice::<MasterRecord>(&data).ok();
            let Some(record) = record.filter(|r| r.is_live(now) && forget != Some(r.id.as_str()))
            else {
                doomed.push(tag);
                continue;
            };
            // Later in the queue is newer when two records have the same beat time.
            let replaced = match newest.get(&record.id) {
                Some((kept, _)) if record.beat_at < kept.beat_at => {
                    doomed.push(tag);
                    continue;
                }
                Some((_, older)) => Some(*older),
                None => None,
            };
            doomed.extend(replaced);
            newest.insert(record.id.clone(), (record, tag));
        }
        self.ack_and_close(&channel, doomed).await?;
        Ok(newest.into_values().map(|(record, _)| record).collect())
    }
}
