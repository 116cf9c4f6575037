//! Istio `security.istio.io` resources (v1beta1 and v1 share one schema):
//! `RequestAuthentication` (which JWTs a workload accepts) and `AuthorizationPolicy` (who may do
//! what). Field names follow istio/api's protos in their JSON (camelCase) form.

use std::collections::BTreeMap;

use crate::config::Dur;
use crate::config::decode::Spanned;
use crate::{decode_enum, decode_struct};

decode_struct! {
    /// A workload selector: the labels of what a policy applies to.
    pub struct WorkloadSelector ("WorkloadSelector") {
        /// Labels that must all be present.
        match_labels: BTreeMap<String, String> = "matchLabels",
    }
}

decode_struct! {
    /// `PolicyTargetReference`: the resource a policy is attached to.
    pub struct PolicyTargetReference ("PolicyTargetReference") {
        /// API group (`gateway.networking.k8s.io`, `networking.istio.io`, `""` for Service).
        group: Option<String> = "group",
        /// Kind: `Gateway`, `Service` or `ServiceEntry`.
        kind: Spanned<String> = "kind",
        /// Name.
        name: Spanned<String> = "name",
        /// Namespace (the policy's when empty).
        namespace: Option<String> = "namespace",
    }
}

decode_struct! {
    /// `RequestAuthentication.spec`.
    pub struct RequestAuthentication ("RequestAuthentication spec") {
        /// The workloads it applies to.
        selector: Option<WorkloadSelector> = "selector",
        /// The resource it applies to.
        target_ref: Option<PolicyTargetReference> = "targetRef",
        /// The resources it applies to.
        target_refs: Vec<PolicyTargetReference> = "targetRefs",
        /// The JWTs accepted.
        jwt_rules: Vec<JwtRule> = "jwtRules",
    }
}

decode_struct! {
    /// `JWTRule`.
    pub struct JwtRule ("JWTRule") {
        /// The `iss` a token must carry.
        issuer: Spanned<String> = "issuer",
        /// Accepted `aud` values (any of them; none: not checked).
        audiences: Vec<String> = "audiences",
        /// Where the public keys are (else OpenID discovery from the issuer).
        jwks_uri: Option<Spanned<String>> = "jwksUri",
        /// The public keys, inline (a JWKS document).
        jwks: Option<Spanned<String>> = "jwks",
        /// Headers a token may come in.
        from_headers: Vec<JwtHeader> = "fromHeaders",
        /// Query parameters a token may come in.
        from_params: Vec<String> = "fromParams",
        /// Cookies a token may come in.
        from_cookies: Vec<String> = "fromCookies",
        /// A header that gets the token's payload (base64url) upstream.
        output_payload_to_header: Option<Spanned<String>> = "outputPayloadToHeader",
        /// Keep the token in the upstream request.
        forward_original_token: Option<bool> = "forwardOriginalToken",
        /// Claims copied into upstream headers.
        output_claim_to_headers: Vec<ClaimToHeader> = "outputClaimToHeaders",
        /// How long a fetch of the keys may take.
        timeout: Option<Dur> = "timeout",
    }
}

decode_struct! {
    /// `JWTHeader`: a header a token may come in, after an optional prefix.
    pub struct JwtHeader ("JWTHeader") {
        /// Header name.
        name: Spanned<String> = "name",
        /// Prefix before the token (`Bearer `).
        prefix: Option<String> = "prefix",
    }
}

decode_struct! {
    /// `ClaimToHeader`.
    pub struct ClaimToHeader ("ClaimToHeader") {
        /// Header to set.
        header: Spanned<String> = "header",
        /// Claim to copy (a name, or a dotted path into nested claims).
        claim: Spanned<String> = "claim",
    }
}

decode_enum! {
    /// `AuthorizationPolicy.Action`.
    pub enum AuthzAction ("action") {
        /// Allow a request only if it matches a rule (the default).
        #[default]
        Allow = "ALLOW",
        /// Deny a request that matches a rule.
        Deny = "DENY",
        /// Log a request that matches a rule; decides nothing.
        Audit = "AUDIT",
        /// Delegate to an external authorizer (refused: weir has none).
        Custom = "CUSTOM",
    }
}

decode_struct! {
    /// `AuthorizationPolicy.spec`.
    pub struct AuthorizationPolicy ("AuthorizationPolicy spec") {
        /// The workloads it applies to.
        selector: Option<WorkloadSelector> = "selector",
        /// The resource it applies to.
        target_ref: Option<PolicyTargetReference> = "targetRef",
        /// The resources it applies to.
        target_refs: Vec<PolicyTargetReference> = "targetRefs",
        /// Rules: a request matches the policy if it matches any.
        rules: Option<Vec<AuthzRule>> = "rules",
        /// What a match does.
        action: Option<Spanned<AuthzAction>> = "action",
        /// The external authorizer of a CUSTOM policy.
        provider: Option<crate::config::decode::Opaque> = "provider",
    }
}

decode_struct! {
    /// `Rule`: `from`, `to` and `when` must all match.
    pub struct AuthzRule ("Rule") {
        /// Sources (any).
        from: Vec<RuleFrom> = "from",
        /// Operations (any).
        to: Vec<RuleTo> = "to",
        /// Conditions (all).
        when: Vec<Condition> = "when",
    }
}

decode_struct! {
    /// `Rule.From`.
    pub struct RuleFrom ("Rule.From") {
        /// The source.
        source: Source = "source",
    }
}

decode_struct! {
    /// `Rule.To`.
    pub struct RuleTo ("Rule.To") {
        /// The operation.
        operation: Operation = "operation",
    }
}

decode_struct! {
    /// `Source`: every field given must match.
    pub struct Source ("Source") {
        /// Peer identities (`cluster.local/ns/NS/sa/SA`), from client certificates.
        principals: Vec<Spanned<String>> = "principals",
        /// Peer identities that must not match.
        not_principals: Vec<Spanned<String>> = "notPrincipals",
        /// Request identities (`ISS/SUB` of a validated JWT).
        request_principals: Vec<Spanned<String>> = "requestPrincipals",
        /// Request identities that must not match.
        not_request_principals: Vec<Spanned<String>> = "notRequestPrincipals",
        /// Peer namespaces (from the peer identity).
        namespaces: Vec<Spanned<String>> = "namespaces",
        /// Peer namespaces that must not match.
        not_namespaces: Vec<Spanned<String>> = "notNamespaces",
        /// Peer service accounts (`NS/SA`, from the peer identity).
        service_accounts: Vec<Spanned<String>> = "serviceAccounts",
        /// Peer service accounts that must not match.
        not_service_accounts: Vec<Spanned<String>> = "notServiceAccounts",
        /// The peer's address (IPs or CIDRs).
        ip_blocks: Vec<Spanned<String>> = "ipBlocks",
        /// Peer addresses that must not match.
        not_ip_blocks: Vec<Spanned<String>> = "notIpBlocks",
        /// The original client's address (`X-Forwarded-For`, trusted hops only).
        remote_ip_blocks: Vec<Spanned<String>> = "remoteIpBlocks",
        /// Original client addresses that must not match.
        not_remote_ip_blocks: Vec<Spanned<String>> = "notRemoteIpBlocks",
    }
}

decode_struct! {
    /// `Operation`: every field given must match.
    pub struct Operation ("Operation") {
        /// Hosts (the request's authority).
        hosts: Vec<Spanned<String>> = "hosts",
        /// Hosts that must not match.
        not_hosts: Vec<Spanned<String>> = "notHosts",
        /// Destination ports.
        ports: Vec<Spanned<String>> = "ports",
        /// Destination ports that must not match.
        not_ports: Vec<Spanned<String>> = "notPorts",
        /// Methods.
        methods: Vec<Spanned<String>> = "methods",
        /// Methods that must not match.
        not_methods: Vec<Spanned<String>> = "notMethods",
        /// Paths (exact, `prefix*`, `*suffix`, `*`, `{*}` and `{**}` templates).
        paths: Vec<Spanned<String>> = "paths",
        /// Paths that must not match.
        not_paths: Vec<Spanned<String>> = "notPaths",
    }
}

decode_struct! {
    /// `Condition`: one attribute against values.
    pub struct Condition ("Condition") {
        /// The attribute (`request.headers[x-token]`, `request.auth.claims[iss]`, ...).
        key: Spanned<String> = "key",
        /// Values, any of which matches.
        values: Vec<Spanned<String>> = "values",
        /// Values none of which may match.
        not_values: Vec<Spanned<String>> = "notValues",
    }
}
