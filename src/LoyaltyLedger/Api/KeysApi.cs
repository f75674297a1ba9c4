using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

public sealed record NewKey(KeyRole Role, string? Name = null);

/// <summary>An organization's API keys: issue, list, rotate, revoke (admin keys only).</summary>
public static class KeysApi
{
    public static RouteGroupBuilder MapKeysApi(this RouteGroupBuilder v1)
    {
        var keys = v1.MapGroup("/keys").WithTags("Keys").RequireAuthorization(CallerClaims.Admin);
        keys.MapGet("/", ListAsync).WithName("ListKeys").WithSummary("The organization's keys (never their secrets).");
        keys.MapPost("/", IssueAsync).WithName("IssueKey").WithSummary("Issues a read, write or admin key; the secret is shown once.");
        keys.MapPost("/{keyId}/rotate", RotateAsync).WithName("RotateKey").WithSummary("Gives a key a new secret; the old one stops working at once.");
        keys.MapDelete("/{keyId}", RevokeAsync).WithName("RevokeKey").WithSummary("Revokes a key; it is refused from the next request on.");
        return v1;
    }

    private static async Task<Ok<IReadOnlyList<KeyView>>> ListAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await Tenants.ListKeysAsync(db, http.User.Caller().OrgId, http.RequestAborted));

    private static async Task<Created<IssuedKey>> IssueAsync(NewKey request, HttpContext http, LedgerDatabase db, TimeProvider clock, IdempotentWriter writer)
    {
        if (!Enum.IsDefined(request.Role)) throw LedgerException.Invalid("role is Read, Write or Admin.");
        if (request.Name is { Length: > 200 }) throw LedgerException.Invalid("A key name is at most 200 characters.");
        var key = await Tenants.IssueKeyAsync(db, http.User.Caller().OrgId, request.Role, clock, http.RequestAborted, name: request.Name);
        await writer.RecordAsync(http, StatusCodes.Status201Created);
        return TypedResults.Created($"/v1/keys/{key.KeyId}", key);
    }

    private static async Task<Ok<IssuedKey>> RotateAsync(string keyId, HttpContext http, LedgerDatabase db, IdempotentWriter writer)
    {
        var key = await Tenants.RotateKeyAsync(db, http.User.Caller().OrgId, keyId, http.RequestAborted);
        await writer.RecordAsync(http, StatusCodes.Status200OK);
        return TypedResults.Ok(key);
    }

    private static async Task<NoContent> RevokeAsync(string keyId, HttpContext http, LedgerDatabase db, TimeProvider clock, IdempotentWriter writer)
    {
        await Tenants.RevokeKeyAsync(db, http.User.Caller().OrgId, keyId, clock, http.RequestAborted);
        await writer.RecordAsync(http, StatusCodes.Status204NoContent);
        return TypedResults.NoContent();
    }
}
