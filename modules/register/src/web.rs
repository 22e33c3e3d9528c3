//! The invite landing page on the HTTP listener (XEP-0401 §3's "landing page"):
//! `GET /invite/<token>` shows who invites to which server, a link that opens the
//! `xmpp:` URI in a client, where to get a client, and an account form for people
//! whose client cannot register in-band; `POST /invite/<token>` creates that account
//! by the same rules as XEP-0077 registration and applies a roster invite.
//!
//! The page is self-contained (inline CSS, no scripts or external assets) and escapes
//! everything it shows. Like file upload, it is served on whatever listener is
//! configured: deployments put TLS in front of a plain one.

use std::sync::Arc;

use starling_api::Context;
use starling_api::http::axum::Router;
use starling_api::http::axum::extract::{ConnectInfo, Form, Path, State};
use starling_api::http::axum::http::StatusCode;
use starling_api::http::axum::response::{Html, IntoResponse, Response};
use starling_api::http::axum::routing::get;
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::StanzaError;

use serde::Deserialize;

use crate::invite::{self, uri};
use crate::store::{self, Invite, Kind};
use crate::{Registration, account, account_error, check_password, now_ms};

#[derive(Clone)]
struct Web {
    ctx: Context,
    state: Arc<Registration>,
}

/// The routes: `/invite/{token}`.
pub(crate) fn routes(ctx: Context, state: Arc<Registration>) -> Router {
    Router::new().route("/invite/{token}", get(show).post(submit)).with_state(Web { ctx, state })
}

/// HTML-escapes text for element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#eef2f7;color:#1d2733;margin:0}\
main{max-width:34rem;margin:2rem auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 2px 12px #0002}\
h1{font-size:1.5rem;margin-top:0}.open{display:block;text-align:center;background:#2f6fdb;color:#fff;\
padding:.9rem;border-radius:8px;text-decoration:none;font-weight:600;margin:1.2rem 0}\
ul.apps{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.5rem}\
ul.apps a{display:inline-block;border:1px solid #c8d3e0;border-radius:6px;padding:.4rem .8rem;color:#1d2733;text-decoration:none}\
label{display:block;margin:.8rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #c8d3e0;border-radius:6px}\
button{font:inherit;margin-top:1rem;padding:.7rem 1.2rem;border:0;border-radius:6px;background:#2f6fdb;color:#fff;font-weight:600}\
.small{color:#5b6877;font-size:.9rem}.error{color:#b3261e}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    );
    (status, [("cache-control", "no-store")], Html(html)).into_response()
}

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Invitation not valid",
        "<h1>This invitation is not valid</h1><p>It may have expired or been used already. \
         Ask the person who sent it for a new one.</p>",
    )
}

const APPS: [(&str, &str); 4] = [
    ("Conversations (Android)", "https://conversations.im/"),
    ("Monal (iOS, macOS)", "https://monal-im.org/"),
    ("Gajim (Windows, Linux)", "https://gajim.org/"),
    ("Dino (Linux)", "https://dino.im/"),
];

fn invite_page(invite: &Invite, token: &str, error: Option<&str>) -> Response {
    let host = escape(&invite.host);
    let heading = match (&invite.creator, invite.kind) {
        (Some(creator), Kind::Roster) => {
            format!("<h1>{} invites you to chat</h1><p>on the server <b>{host}</b>.</p>", escape(creator))
        }
        _ => format!("<h1>You are invited to {host}</h1><p>Create an account on <b>{host}</b>.</p>"),
    };
    let apps: String =
        APPS.iter().map(|(name, url)| format!("<li><a href=\"{url}\">{}</a></li>", escape(name))).collect();
    let error = error.map(|e| format!("<p class=\"error\">{}</p>", escape(e))).unwrap_or_default();
    let body = format!(
        "{heading}<a class=\"open\" href=\"{uri}\">Open the invitation in your app</a>\
         <p>No app yet? Install one, then come back and tap the button:</p><ul class=\"apps\">{apps}</ul>\
         <h2>Or create your account here</h2>{error}\
         <form method=\"post\" action=\"/invite/{path}\">\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" required autocomplete=\"username\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"new-password\">\
         <button type=\"submit\">Create account</button></form>\
         <p class=\"small\">This invitation expires {expires}.</p>",
        uri = escape(&uri(invite, token)),
        path = escape(&invite::encode(token)),
        expires = escape(&invite::rfc3339(invite.expires_at)),
    );
    page(StatusCode::OK, "Invitation", &body)
}

async fn lookup(web: &Web, token: &str) -> Result<Option<Invite>, Response> {
    let t = token.to_owned();
    web.ctx.db().run(move |c| store::find(c, &t, now_ms())).await.map_err(|err| {
        tracing::error!(error = %err, "invite lookup failed");
        page(StatusCode::INTERNAL_SERVER_ERROR, "Error", "<h1>Something went wrong</h1><p>Try again later.</p>")
    })
}

async fn show(State(web): State<Web>, Path(token): Path<String>) -> Response {
    match lookup(&web, &token).await {
        Ok(Some(invite)) if web.ctx.is_local_host(&invite.host) => invite_page(&invite, &token, None),
        Ok(_) => gone(),
        Err(page) => page,
    }
}

/// The account form.
#[derive(Deserialize)]
struct Account {
    username: String,
    password: String,
}

fn reason(error: &StanzaError) -> String {
    error.texts.values().next().cloned().unwrap_or_else(|| match error.defined_condition {
        starling_api::xmpp_parsers::stanza_error::DefinedCondition::Conflict => "That username is taken.".to_owned(),
        _ => "The account could not be created.".to_owned(),
    })
}

async fn submit(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(token): Path<String>,
    Form(form): Form<Account>,
) -> Response {
    let invite = match lookup(&web, &token).await {
        Ok(Some(invite)) if web.ctx.is_local_host(&invite.host) => invite,
        Ok(_) => return gone(),
        Err(page) => return page,
    };
    // The same per-address limit as in-band registration: a leaked multi-use invite
    // does not become an account factory.
    if !web.state.allowed(peer.ip()) {
        return invite_page(
            &invite,
            &token,
            Some("Too many accounts were created from your address. Try again later."),
        );
    }
    let checked = account(form.username.trim(), &invite.host)
        .and_then(|jid| check_password(&web.state, &form.password).map(|()| jid));
    let jid = match checked {
        Ok(jid) => jid,
        Err(err) => return invite_page(&invite, &token, Some(&reason(&err))),
    };
    match web.ctx.accounts().get(&jid).await {
        Ok(None) => {}
        Ok(Some(_)) => return invite_page(&invite, &token, Some("That username is taken.")),
        Err(err) => return invite_page(&invite, &token, Some(&reason(&crate::internal(err)))),
    }
    let (host, t) = (invite.host.clone(), token.clone());
    let spent = match web.ctx.db().run(move |c| store::spend(c, &host, &t, now_ms())).await {
        Ok(Some(spent)) => spent,
        Ok(None) => return gone(),
        Err(err) => return invite_page(&invite, &token, Some(&reason(&crate::internal(err)))),
    };
    if let Err(err) = web.ctx.accounts().create(&jid, &form.password).await {
        let (host, t) = (invite.host.clone(), token.clone());
        if let Err(err) = web.ctx.db().run(move |c| store::refund(c, &host, &t)).await {
            tracing::error!(error = %err, "invite refund failed");
        }
        return invite_page(&invite, &token, Some(&reason(&account_error(err))));
    }
    web.state.record(peer.ip());
    tracing::info!(%jid, ip = %peer.ip(), "account registered on the invite page");
    invite::apply(&web.ctx, &spent, &jid).await;
    let body = format!(
        "<h1>Welcome!</h1><p>Your account <b>{jid}</b> is ready. Log in with it and your password in any XMPP app:</p>\
         <ul class=\"apps\">{}</ul>",
        APPS.iter().map(|(name, url)| format!("<li><a href=\"{url}\">{}</a></li>", escape(name))).collect::<String>(),
        jid = escape(&jid.to_string()),
    );
    page(StatusCode::OK, "Account created", &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(super::escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
