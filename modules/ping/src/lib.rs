//! XEP-0199: XMPP Ping — the server answers `<ping xmlns='urn:xmpp:ping'/>` addressed to
//! it with an empty result, so clients can check the connection (§4.3).

use starling_api::xmpp_parsers::{ns, ping::Ping};
use starling_api::{Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "ping",
    summary: "XEP-0199 XMPP Ping: the server answers pings",
    specs: &[SpecSupport { spec: Spec::Xep(199), version: "2.0.1", status: Support::Complete, features: &[ns::PING] }],
    migrations: None,
    forget_user: None,
    start,
};

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    // Components answer pings too (XEP-0199 §4.3; MUC self-pings go to rooms instead).
    for scope in [Scope::Server, Scope::Component] {
        reg.disco_feature(scope, ns::PING);
        reg.iq_get::<Ping, _, _>(scope, pong);
    }
    Ok(())
}

async fn pong(_ctx: Context, _req: IqRequest<Ping>) -> IqResult {
    Ok(None)
}
