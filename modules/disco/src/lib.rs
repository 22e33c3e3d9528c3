//! XEP-0030: Service Discovery — answers `disco#info` and `disco#items` for the server
//! and for accounts, from what every enabled module registered.
//!
//! The server is `server/im` (XEP-0030 §3.1, the Registrar's category list); an account
//! is `account/registered`. Features come from the registry, so a module that is not
//! enabled is not advertised. A query on an unknown `node` is `item-not-found`.

use starling_api::module::DiscoIdentity;
use starling_api::xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity};
use starling_api::xmpp_parsers::ns;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support, caps, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "disco",
    summary: "XEP-0030 Service Discovery for the server and accounts",
    specs: &[
        SpecSupport {
            spec: Spec::Xep(30),
            version: "2.5rc3",
            status: Support::Complete,
            features: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
        },
        SpecSupport { spec: Spec::Xep(115), version: "1.6.0", status: Support::Complete, features: &[ns::CAPS] },
    ],
    migrations: None,
    forget_user: None,
    start,
};

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    for scope in [Scope::Server, Scope::Account] {
        reg.disco_feature(scope, ns::DISCO_INFO);
        reg.disco_feature(scope, ns::DISCO_ITEMS);
    }
    reg.disco_feature(Scope::Server, ns::CAPS);
    reg.disco_identity(Scope::Server, DiscoIdentity { category: "server", type_: "im", name: "Starling" });
    reg.disco_identity(Scope::Account, DiscoIdentity { category: "account", type_: "registered", name: "" });

    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Server, |ctx, req| info(ctx, req, &[Scope::Server]));
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Account, |ctx, req| info(ctx, req, &[Scope::Account]));
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::OwnAccount, |ctx, req| {
        info(ctx, req, &[Scope::Account, Scope::OwnAccount])
    });
    for scope in [Scope::Server, Scope::Account, Scope::OwnAccount] {
        reg.iq_get::<DiscoItemsQuery, _, _>(scope, items);
    }
    Ok(())
}

async fn info(ctx: Context, req: IqRequest<DiscoInfoQuery>, scopes: &'static [Scope]) -> IqResult {
    let host = req.to.domain().to_string();
    let (found, features) = caps::disco_info(&ctx, &host, scopes);
    // XEP-0115 §6.2: the server's own caps node answers like the server.
    let node = match req.payload.node {
        None => None,
        Some(node)
            if scopes == [Scope::Server] && node == format!("{}#{}", caps::CAPS_NODE, caps::ver(&found, &features)) =>
        {
            Some(node)
        }
        Some(_) => return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
    };
    let identities = found
        .iter()
        .map(|identity| {
            let mut id = Identity::new_anonymous::<_, _, String, String>(identity.category, identity.type_);
            if !identity.name.is_empty() {
                id.name = Some(identity.name.to_owned());
            }
            id
        })
        .collect();
    let result = DiscoInfoResult { node, identities, features, extensions: Vec::new() };
    Ok(Some(result.into()))
}

async fn items(_ctx: Context, req: IqRequest<DiscoItemsQuery>) -> IqResult {
    if req.payload.node.is_some() {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    let result = DiscoItemsResult { node: None, items: Vec::new(), rsm: None };
    Ok(Some(result.into()))
}
