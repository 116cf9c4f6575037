//! Calls to a running weir's admin API, for the command line and for tests.

/// One call to a running weir's admin API (for the CLI): the status and the body.
pub async fn call(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String), crate::control::call::CallError> {
    call_with_token(admin, method, path, None).await
}

/// [`call`] with the admin token, when one is given.
pub async fn call_with_token(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), crate::control::call::CallError> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| crate::control::call::CallError::Http(format!("bad method {method}")))?;
    let url = format!("http://{admin}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let reply = crate::control::call::call_via(
        method,
        &url,
        None,
        std::time::Duration::from_secs(10),
        None,
        auth.as_deref(),
    )
    .await?;
    Ok((reply.status, reply.body.trim_end().to_owned()))
}

/// Reads an admin token file: its first line, trimmed; an empty token is refused.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read admin token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(format!("admin token file {} is empty", path.display()));
    }
    Ok(token)
}
