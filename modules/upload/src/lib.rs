//! XEP-0363: HTTP File Upload — a component (`upload.<host>` by default) hands local
//! users a slot: a PUT URL to upload one file of the announced size, and a GET URL to
//! share it. Both URLs carry an HMAC over the slot (keyed with a server secret), so
//! they cannot be guessed or altered; the PUT URL also expires and works once.
//!
//! Limits: a per-file maximum (`file-too-large` with `max-file-size`, §4.1, also
//! advertised in disco, §2) and a per-user quota over the files a user has stored
//! (`resource-constraint`). The HTTP side (`http.rs`) streams bodies to a
//! [`store::FileStore`] (on disk by default) while enforcing the announced
//! Content-Length, serves Range requests, and answers CORS preflights for web clients.
//! A background sweeper deletes unused slots and files older than `file_lifetime`.

#[cfg(fuzzing)]
pub mod fuzzing;
mod http;
mod signing;
mod slots;
pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use starling_api::xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, Identity};
use starling_api::xmpp_parsers::http_upload::{Get, Put, SlotRequest, SlotResult};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, IqPayload, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport,
    Support, caps, stanza_error,
};
use tokio_util::sync::CancellationToken;

use crate::signing::Signer;
use crate::store::{DiskStore, FileStore};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "upload",
    summary: "XEP-0363 HTTP File Upload (component upload.<host>)",
    specs: &[SpecSupport { spec: Spec::Xep(363), version: "1.1.0", status: Support::Complete, features: &[NS_UPLOAD] }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(slots::forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";

/// `[modules.upload]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UploadConfig {
    /// The component's domain; `{host}` is replaced by each virtual host.
    domain: String,
    /// Where files are stored.
    storage_dir: PathBuf,
    /// Largest file accepted, in bytes.
    max_file_size: u64,
    /// Bytes of stored files per user; 0 for no limit.
    quota_per_user: u64,
    /// Seconds a slot's PUT URL stays valid.
    slot_lifetime: u64,
    /// Seconds a file is kept after its upload; 0 keeps files for ever.
    file_lifetime: u64,
    /// Seconds between expiry sweeps.
    sweep_interval: u64,
    /// The key URLs are signed with; empty: a random one kept in `<storage_dir>/secret`.
    secret: String,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            domain: "upload.{host}".into(),
            storage_dir: PathBuf::from("data/upload"),
            max_file_size: 100 * 1024 * 1024,
            quota_per_user: 1024 * 1024 * 1024,
            slot_lifetime: 300,
            file_lifetime: 30 * 24 * 3600,
            sweep_interval: 3600,
            secret: String::new(),
        }
    }
}

/// What the IQ handlers, the HTTP routes and the sweeper share once HTTP runs.
struct Service {
    config: UploadConfig,
    signer: Signer,
    store: Arc<dyn FileStore>,
    base_url: String,
}

/// Set when the HTTP routes are built; without an HTTP listener it stays empty and
/// slot requests are answered `service-unavailable`.
type Shared = Arc<OnceLock<Arc<Service>>>;

/// `<request xmlns='urn:xmpp:http:upload:0'/>`. Parsed here rather than with
/// xmpp-parsers' `SlotRequest`, which refuses a request without `content-type` (the
/// attribute is optional, XEP-0363 §4).
struct Request(SlotRequest);

impl TryFrom<Element> for Request {
    type Error = Element;
    fn try_from(element: Element) -> Result<Self, Element> {
        let filename = element.attr("filename").map(str::to_owned);
        let size = element.attr("size").and_then(|s| s.parse::<u64>().ok());
        match (element.is("request", NS_UPLOAD), filename, size) {
            (true, Some(filename), Some(size)) => {
                let content_type = element.attr("content-type").map(str::to_owned);
                Ok(Request(SlotRequest { filename, size, content_type }))
            }
            _ => Err(element),
        }
    }
}

impl IqPayload for Request {
    const NS: &'static str = NS_UPLOAD;
    const NAME: &'static str = "request";
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: UploadConfig = reg.config()?;
    if config.max_file_size == 0 || config.slot_lifetime == 0 || config.sweep_interval == 0 {
        return Err(ModuleError::Config {
            module: "upload",
            message: "max_file_size, slot_lifetime and sweep_interval must be positive".into(),
        });
    }
    for host in reg.hosts().to_vec() {
        let domain = config.domain.replace("{host}", &host);
        // Everything the component answers is typed IQ; other stanzas are dropped.
        reg.component(&domain, &host, |_, _| {})?;
    }
    reg.disco_identity(
        Scope::Component,
        starling_api::module::DiscoIdentity { category: "store", type_: "file", name: "HTTP File Upload" },
    );
    reg.disco_feature(Scope::Component, NS_UPLOAD);
    let shared: Shared = Arc::new(OnceLock::new());
    let slots = shared.clone();
    reg.iq_get::<Request, _, _>(Scope::Component, move |ctx, req| request_slot(ctx, req, slots.get().cloned()));
    let disco = shared.clone();
    let max = config.max_file_size;
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Component, move |ctx, req| {
        let ready = disco.get().is_some();
        async move { disco_info(&ctx, &req, ready.then_some(max)) }
    });
    let routes = shared.clone();
    let settings = config.clone();
    reg.http_routes(move |ctx| {
        let service = Arc::new(prepare(&ctx, settings.clone())?);
        let router = http::routes(ctx, service.clone());
        // Built once at start-up; a second build keeps the first service.
        let _ = routes.set(service);
        Ok(router)
    });
    let sweeper = shared;
    reg.task("upload-sweeper", move |ctx, token| sweep_loop(ctx, sweeper.clone(), token));
    Ok(())
}

fn prepare(ctx: &Context, config: UploadConfig) -> Result<Service, ModuleError> {
    let failed = |message: String| ModuleError::Start { module: "upload", message };
    let base_url = ctx.server().http_url.clone().ok_or_else(|| failed("no HTTP listener".into()))?;
    let store = DiskStore::new(config.storage_dir.clone())
        .map_err(|e| failed(format!("storage_dir {}: {e}", config.storage_dir.display())))?;
    let signer = if config.secret.is_empty() {
        Signer::from_file(&config.storage_dir.join("secret")).map_err(|e| failed(format!("secret: {e}")))?
    } else {
        Signer::new(config.secret.as_bytes())
    };
    Ok(Service { config, signer, store: Arc::new(store), base_url })
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn error_with_text(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    let mut error = stanza_error(type_, condition);
    error.texts.insert(String::new(), text.to_owned());
    error
}

/// XEP-0363 §4: checks the request against the limits and hands out a slot.
async fn request_slot(ctx: Context, req: IqRequest<Request>, service: Option<Arc<Service>>) -> IqResult {
    let Some(service) = service else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
    };
    let Some(component) = ctx.registry().component(req.to.domain().as_str()) else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let host = component.host.clone();
    // Only the host's own users may upload (the component serves its host's accounts).
    let user = match req.from.node() {
        Some(node) if req.from.domain().as_str() == host => node.to_string(),
        _ => return Err(stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed)),
    };
    let SlotRequest { filename, size, content_type } = req.payload.0;
    let config = &service.config;
    if size > config.max_file_size {
        let mut error = error_with_text(ErrorType::Modify, DefinedCondition::NotAcceptable, "File too large");
        error.other = Some(
            Element::builder("file-too-large", NS_UPLOAD)
                .append(Element::builder("max-file-size", NS_UPLOAD).append(config.max_file_size.to_string()).build())
                .build(),
        );
        return Err(error);
    }
    let filename = filename.trim().to_owned();
    if size == 0 || filename.is_empty() || filename.contains(['/', '\\']) || filename.len() > 255 {
        return Err(error_with_text(ErrorType::Modify, DefinedCondition::BadRequest, "Bad filename or size"));
    }
    let content_type = content_type
        .filter(|t| !t.is_empty() && t.len() <= 255 && t.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let now = now();
    let slot = slots::Slot {
        id: signing::new_id(),
        host,
        username: user,
        filename,
        size: size as i64,
        content_type,
        state: slots::PENDING,
        created_at: now,
        expires_at: now + config.slot_lifetime as i64,
    };
    let quota = config.quota_per_user;
    if !slots::insert_within_quota(ctx.db(), slot.clone(), quota).await? {
        return Err(error_with_text(ErrorType::Wait, DefinedCondition::ResourceConstraint, "Quota exceeded"));
    }
    let (put, get) = service.urls(&slot);
    let slot = SlotResult { put: Put { url: put, headers: Vec::new() }, get: Get { url: get } };
    Ok(Some(slot.into()))
}

impl Service {
    /// The slot's PUT and GET URLs.
    fn urls(&self, slot: &slots::Slot) -> (String, String) {
        let path = http::file_path(&self.signer, &slot.id, &slot.filename);
        let get = format!("{}{path}", self.base_url);
        let signature = self.signer.put_signature(slot);
        (format!("{get}?expires={}&signature={signature}", slot.expires_at), get)
    }
}

/// Disco#info of the component (XEP-0363 §2): identity, feature, and `max-file-size`
/// in an XEP-0128 form (once the HTTP side runs).
fn disco_info(ctx: &Context, req: &IqRequest<DiscoInfoQuery>, max: Option<u64>) -> IqResult {
    if req.payload.node.is_some() {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    let Some((identities, features)) = caps::component_disco_info(ctx, req.to.domain().as_str()) else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let identities = identities
        .iter()
        .map(|i| {
            let mut identity = Identity::new_anonymous::<_, _, String, String>(i.category, i.type_);
            identity.name = Some(i.name.to_owned());
            identity
        })
        .collect();
    let extensions = match max {
        Some(max) => vec![DataForm::new(
            DataFormType::Result_,
            NS_UPLOAD,
            vec![Field::text_single("max-file-size", &max.to_string())],
        )],
        None => Vec::new(),
    };
    Ok(Some(DiscoInfoResult { node: None, identities, features, extensions }.into()))
}

async fn sweep_loop(ctx: Context, shared: Shared, token: CancellationToken) {
    loop {
        let interval = shared.get().map_or(3600, |s| s.config.sweep_interval);
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
        }
        if let Some(service) = shared.get() {
            match slots::sweep(ctx.db(), service.store.as_ref(), now()).await {
                Ok(0) => {}
                Ok(removed) => starling_api::tracing::info!(removed, "expired uploads removed"),
                Err(err) => starling_api::tracing::warn!(error = %err, "upload sweep failed"),
            }
        }
    }
}
