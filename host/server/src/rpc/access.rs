//! `users.*` and `tokens.*`: who may call, and with what. Creating a user needs
//! `admin` and listing users `read`; `tokens.*` take a token of either `read` or
//! `submit`, because the auth service checks each call against the caller: a user who
//! is not an admin mints only for themself, only scopes the calling token holds,
//! and lists and revokes only their own tokens.

use super::api::{Access, Api};
use super::{Empty, IdRequest, to_rpc_error};
use crate::auth::Scope;
use jobhost_model::{NewToken, TokenInfo, TokenList, User, UserList};
use schemars::JsonSchema;
use serde::Deserialize;

/// Registers `users.create`, `users.list`, `tokens.create`, `tokens.list`,
/// `tokens.revoke` and `tokens.ticket`.
pub(super) fn register(api: &mut Api) -> anyhow::Result<()> {
    use Access::{ReadOrSubmit, Scope as Needs};
    use Scope::{Admin, Read};
    api.method::<CreateUserRequest, User, _, _>(
        "users.create",
        "Creates a user.",
        Needs(Admin),
        |req, caller, ctx| async move {
            ctx.auth.create_user(&caller, &req.name, req.is_admin).await.map_err(to_rpc_error)
        },
    )?;
    api.method::<Empty, UserList, _, _>(
        "users.list",
        "Users the caller may see.",
        Needs(Read),
        |_, caller, ctx| async move {
            let users = ctx.auth.list_users(&caller).await.map_err(to_rpc_error)?;
            Ok(UserList { users })
        },
    )?;
    // Any scope will do for tokens.*: what a token may do is checked against the caller's.
    api.method::<CreateTokenRequest, NewToken, _, _>(
        "tokens.create",
        "Mints an API token; its secret is shown only in this answer.",
        ReadOrSubmit,
        |req, caller, ctx| async move {
            ctx.auth
                .create_token(&caller, req.user.as_deref(), &req.scopes, req.expires_in_s)
                .await
                .map_err(to_rpc_error)
        },
    )?;
    api.method::<Empty, TokenList, _, _>(
        "tokens.list",
        "The caller's tokens (all tokens for an admin), without secrets.",
        ReadOrSubmit,
        |_, caller, ctx| async move {
            let tokens = ctx.auth.list_tokens(&caller).await.map_err(to_rpc_error)?;
            Ok(TokenList { tokens })
        },
    )?;
    api.method::<IdRequest, TokenInfo, _, _>(
        "tokens.revoke",
        "Revokes a token.",
        ReadOrSubmit,
        |req, caller, ctx| async move { ctx.auth.revoke_token(&caller, &req.id).await.map_err(to_rpc_error) },
    )?;
    api.method::<super::Empty, jobhost_model::Ticket, _, _>(
        "tokens.ticket",
        "A one-time ticket that opens one WebSocket as this token within 30 s (for browsers).",
        ReadOrSubmit,
        |_, caller, ctx| async move {
            let ticket = ctx.auth.ticket(&caller).map_err(to_rpc_error)?;
            Ok(jobhost_model::Ticket { ticket, expires_in_s: crate::auth::TICKET_LIFETIME.as_secs() })
        },
    )?;
    Ok(())
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    /// The user's name.
    name: String,
    /// Whether the user is an admin.
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    /// Whose token (default: the caller's own).
    #[serde(default)]
    user: Option<String>,
    /// What it may do.
    scopes: Vec<Scope>,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    expires_in_s: Option<u64>,
}
