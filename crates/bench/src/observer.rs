//! A foreign MQTT client that sees what the broker really delivers: it
//! subscribes to a status topic before a row changes and reports each
//! message with the instant it arrived.

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Something the observer's event loop saw.
enum Seen {
    SubAck,
    Message {
        topic: String,
        payload: String,
        at: Instant,
    },
}

/// A subscriber on the benchmark's broker.
pub struct Observer {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Connects to the broker on 127.0.0.1:`port` (the first SUBSCRIBE waits
    /// for the CONNACK).
    pub fn connect(port: u16) -> Observer {
        let id = format!("bench_observer_{}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 16);
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let sent = match events.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => tx.send(Seen::Message {
                        topic: p.topic,
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        at: Instant::now(),
                    }),
                    Ok(Event::Incoming(Incoming::SubAck(_))) => tx.send(Seen::SubAck),
                    Ok(_) => Ok(()),
                    Err(_) => {
                        // rumqttc reconnects on the next poll; do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(())
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        Observer { client, seen, task }
    }

    /// Subscribes to `topic` and waits for the SUBACK.
    pub async fn subscribe(&mut self, topic: &str, timeout: Duration) -> anyhow::Result<()> {
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .context("queueing the observer's SUBSCRIBE")?;
        let acked = tokio::time::timeout(timeout, async {
            while let Some(seen) = self.seen.recv().await {
                if matches!(seen, Seen::SubAck) {
                    return true;
                }
            }
            false
        })
        .await;
        match acked {
            Ok(true) => Ok(()),
            Ok(false) => bail!("the observer's event loop ended"),
            Err(_) => bail!(
                "the observer got no SUBACK for {topic} within {} s",
                timeout.as_secs()
            ),
        }
    }

    /// Unsubscribes from `topic` (does not wait for the UNSUBACK).
    pub async fn unsubscribe(&self, topic: &str) -> anyhow::Result<()> {
        self.client
            .unsubscribe(topic)
            .await
            .context("queueing the observer's UNSUBSCRIBE")
    }

    /// Waits for `payload` on `topic`; returns when it arrived.
    pub async fn wait_for(
        &mut self,
        topic: &str,
        payload: &str,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let found = tokio::time::timeout(timeout, async {
            while let Some(seen) = self.seen.recv().await {
                if let Seen::Message {
                    topic: t,
                    payload: p,
                    at,
                } = seen
                    && t == topic
                    && p == payload
                {
                    return Some(at);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(at)) => Ok(at),
            Ok(None) => bail!("the observer's event loop ended"),
            Err(_) => bail!(
                "`{payload}` did not arrive on {topic} within {} s",
                timeout.as_secs()
            ),
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
