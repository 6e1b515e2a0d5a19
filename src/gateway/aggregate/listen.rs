//! `subscriptions/listen` (MCP 2026-07-28) on the merged server: one downstream stream fed by
//! every upstream. A 2026-07-28 upstream gets a listen stream of its own, whose notifications
//! are passed on; a session-based upstream announces changes as plain notifications, which its
//! relay hands to every open downstream stream ([`super::Listeners`]).

use rmcp::{
    ErrorData,
    model::SubscriptionFilter,
    service::{SubscriptionContext, SubscriptionSink},
};
use std::sync::Arc;
use tokio::task::JoinSet;

use super::Aggregator;
use crate::gateway::upstream::UpstreamClient;

impl Aggregator {
    /// Runs one downstream subscription until the client ends it.
    pub(super) async fn relay_subscription(&self, subscription: SubscriptionContext) -> Result<(), ErrorData> {
        let sink = subscription.sink().clone();
        self.0.listeners.add(sink.clone());
        let accepted = subscription.accepted().clone();
        let mut pumps = JoinSet::new();
        for (index, client) in self.reachable().await {
            if !client.is_stateless() {
                continue;
            }
            let filter = self.filter_for(index, &accepted);
            let upstream = self.name_of(index).to_owned();
            pumps.spawn(pump(client, filter, sink.clone(), upstream));
        }
        subscription.cancelled().await;
        pumps.abort_all();
        self.0.listeners.remove(sink.id());
        Ok(())
    }

    /// The part of `accepted` that concerns upstream `index`: all list changes, and the
    /// resources it owns (or might own, when that cannot be told).
    fn filter_for(&self, index: usize, accepted: &SubscriptionFilter) -> SubscriptionFilter {
        let mut filter = accepted.clone();
        filter.resource_subscriptions = accepted.resource_subscriptions.as_ref().map(|uris| {
            uris.iter().filter(|uri| self.owner_of(uri).is_none_or(|owner| owner == index)).cloned().collect()
        });
        filter
    }
}

/// Passes one upstream's listen stream on to the downstream one, until either ends.
async fn pump(client: Arc<UpstreamClient>, filter: SubscriptionFilter, sink: SubscriptionSink, upstream: String) {
    let mut subscription = match client.peer().listen(filter).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%upstream, %error, "upstream refused subscriptions/listen");
            return;
        }
    };
    loop {
        match subscription.next().await {
            Ok(Some(notification)) => {
                if let Err(error) = sink.send(notification).await {
                    tracing::debug!(%upstream, %error, "listen stream closed");
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%upstream, %error, "upstream listen stream failed");
                return;
            }
        }
    }
}
