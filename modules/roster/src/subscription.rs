//! The presence subscription state machine of RFC 6121 §3 and Appendix A, sans-IO:
//! given an item's state and a subscription stanza, what the new state is and what
//! the server must do.

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subscription {
    /// Neither side is subscribed.
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both.
    Both,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Parses a stored value.
    pub fn parse(value: &str) -> Self {
        match value {
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => Subscription::None,
        }
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    fn with(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

impl From<Subscription> for starling_api::roster::Subscription {
    fn from(value: Subscription) -> Self {
        match value {
            Subscription::None => starling_api::roster::Subscription::None,
            Subscription::To => starling_api::roster::Subscription::To,
            Subscription::From => starling_api::roster::Subscription::From,
            Subscription::Both => starling_api::roster::Subscription::Both,
        }
    }
}

/// The subscription-related state of one contact in one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemState {
    /// The subscription.
    pub subscription: Subscription,
    /// The user asked to subscribe and the contact has not answered (`ask='subscribe'`).
    pub ask: bool,
    /// The contact asked to subscribe to the user, unanswered.
    pub pending_in: bool,
    /// The user pre-approved a subscription request (RFC 6121 §3.4).
    pub approved: bool,
    /// Shown in the user's roster (the user added it, or a subscription exists).
    pub in_roster: bool,
}

/// The four subscription stanza types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `subscribe`
    Subscribe,
    /// `subscribed`
    Subscribed,
    /// `unsubscribe`
    Unsubscribe,
    /// `unsubscribed`
    Unsubscribed,
}

impl Kind {
    /// From a presence `type`.
    pub fn parse(type_: &str) -> Option<Kind> {
        match type_ {
            "subscribe" => Some(Kind::Subscribe),
            "subscribed" => Some(Kind::Subscribed),
            "unsubscribe" => Some(Kind::Unsubscribe),
            "unsubscribed" => Some(Kind::Unsubscribed),
            _ => None,
        }
    }
}

/// What to do with a subscription stanza the user sent (RFC 6121 §3.1.2, §3.1.5,
/// §3.2.2, §3.3.2, §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// The item's new state.
    pub state: ItemState,
    /// Push the changed item to the user's interested resources.
    pub push: bool,
    /// Route the stanza to the contact (from the user's bare JID).
    pub route: bool,
    /// Send the user's current presence to the contact (a new subscriber).
    pub send_presence: bool,
    /// Send unavailable presence to the contact (a cancelled subscriber).
    pub send_unavailable: bool,
}

/// The outbound transition.
pub fn outbound(old: ItemState, kind: Kind) -> Outbound {
    let mut state = old;
    let mut out = Outbound { state, push: false, route: true, send_presence: false, send_unavailable: false };
    match kind {
        Kind::Subscribe => {
            if !old.subscription.has_to() {
                state.ask = true;
            }
            state.in_roster = true;
        }
        Kind::Subscribed => {
            if old.pending_in {
                state.pending_in = false;
                state.subscription = Subscription::with(old.subscription.has_to(), true);
                state.in_roster = true;
                out.send_presence = true;
            } else if !old.subscription.has_from() {
                // Pre-approval: remembered, not routed.
                state.approved = true;
                state.in_roster = true;
                out.route = false;
            } else {
                out.route = false;
            }
        }
        Kind::Unsubscribe => {
            state.ask = false;
            state.subscription = Subscription::with(false, old.subscription.has_from());
        }
        Kind::Unsubscribed => {
            state.pending_in = false;
            state.approved = false;
            state.subscription = Subscription::with(old.subscription.has_to(), false);
            out.send_unavailable = old.subscription.has_from();
        }
    }
    out.push = state != old && (state.in_roster || old.in_roster);
    out.state = state;
    out
}

/// What to do with a subscription stanza a contact sent to the user (RFC 6121 §3.1.3,
/// §3.1.6, §3.2.3, §3.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// The item's new state.
    pub state: ItemState,
    /// Push the changed item.
    pub push: bool,
    /// Deliver the stanza to the user's available resources.
    pub deliver: bool,
    /// Answer `subscribed` on the user's behalf (already subscribed, or pre-approved).
    pub auto_subscribed: bool,
}

/// The inbound transition.
pub fn inbound(old: ItemState, kind: Kind) -> Inbound {
    let mut state = old;
    let mut out = Inbound { state, push: false, deliver: false, auto_subscribed: false };
    match kind {
        Kind::Subscribe => {
            if old.subscription.has_from() {
                out.auto_subscribed = true;
            } else if old.approved {
                state.approved = false;
                state.subscription = Subscription::with(old.subscription.has_to(), true);
                state.in_roster = true;
                out.auto_subscribed = true;
            } else {
                state.pending_in = true;
                out.deliver = true;
            }
        }
        Kind::Subscribed => {
            if old.ask {
                state.ask = false;
                state.subscription = Subscription::with(true, old.subscription.has_from());
                out.deliver = true;
            }
        }
        Kind::Unsubscribe => {
            if old.subscription.has_from() || old.pending_in {
                state.pending_in = false;
                state.subscription = Subscription::with(old.subscription.has_to(), false);
                out.deliver = true;
            }
        }
        Kind::Unsubscribed => {
            if old.subscription.has_to() || old.ask {
                state.ask = false;
                state.subscription = Subscription::with(false, old.subscription.has_from());
                out.deliver = true;
            }
        }
    }
    out.push = state != old && state.in_roster;
    out.state = state;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(subscription: Subscription) -> ItemState {
        ItemState { subscription, in_roster: true, ..ItemState::default() }
    }

    #[test]
    fn full_handshake_reaches_both() {
        // Alice subscribes to Bob; Bob approves; Bob subscribes back; Alice approves.
        let alice = outbound(ItemState::default(), Kind::Subscribe);
        assert!(alice.route && alice.push && alice.state.ask && alice.state.in_roster);
        let bob = inbound(ItemState::default(), Kind::Subscribe);
        assert!(bob.deliver && bob.state.pending_in && !bob.push, "pending-in is not a roster item yet");
        let bob = outbound(bob.state, Kind::Subscribed);
        assert_eq!(bob.state.subscription, Subscription::From);
        assert!(bob.route && bob.send_presence && bob.push);
        let alice = inbound(alice.state, Kind::Subscribed);
        assert_eq!(alice.state.subscription, Subscription::To);
        assert!(!alice.state.ask && alice.deliver);
        let bob = outbound(bob.state, Kind::Subscribe);
        let alice = inbound(alice.state, Kind::Subscribe);
        let alice = outbound(alice.state, Kind::Subscribed);
        assert_eq!(alice.state.subscription, Subscription::Both);
        let bob = inbound(bob.state, Kind::Subscribed);
        assert_eq!(bob.state.subscription, Subscription::Both);
    }

    #[test]
    fn unsolicited_subscribed_is_ignored() {
        let out = inbound(st(Subscription::None), Kind::Subscribed);
        assert_eq!(out.state, st(Subscription::None));
        assert!(!out.deliver && !out.push);
    }

    #[test]
    fn subscribe_from_an_existing_subscriber_is_auto_answered() {
        let out = inbound(st(Subscription::From), Kind::Subscribe);
        assert!(out.auto_subscribed && !out.deliver);
    }

    #[test]
    fn pre_approval_is_stored_then_used() {
        let approve = outbound(ItemState::default(), Kind::Subscribed);
        assert!(!approve.route && approve.state.approved && approve.push);
        let request = inbound(approve.state, Kind::Subscribe);
        assert!(request.auto_subscribed && !request.deliver);
        assert_eq!(request.state.subscription, Subscription::From);
        assert!(!request.state.approved);
    }

    #[test]
    fn cancellations() {
        let out = outbound(st(Subscription::Both), Kind::Unsubscribe);
        assert_eq!(out.state.subscription, Subscription::From);
        let out = outbound(st(Subscription::Both), Kind::Unsubscribed);
        assert_eq!(out.state.subscription, Subscription::To);
        assert!(out.send_unavailable);
        let inb = inbound(st(Subscription::Both), Kind::Unsubscribe);
        assert_eq!(inb.state.subscription, Subscription::To);
        let inb = inbound(st(Subscription::Both), Kind::Unsubscribed);
        assert_eq!(inb.state.subscription, Subscription::From);
        let inb = inbound(st(Subscription::None), Kind::Unsubscribed);
        assert!(!inb.deliver, "nothing to cancel");
    }

    #[test]
    fn denying_a_pending_request_clears_it() {
        let pending = inbound(ItemState::default(), Kind::Subscribe).state;
        let deny = outbound(pending, Kind::Unsubscribed);
        assert!(!deny.state.pending_in && deny.route);
    }
}
