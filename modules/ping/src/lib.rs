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
    reg.disco_feature(Scope::Server, ns::PING);
    reg.iq_get::<Ping, _, _>(Scope::Server, pong);
    Ok(())
}

async fn pong(_ctx: Context, _req: IqRequest<Ping>) -> IqResult {
    Ok(None)
}
