using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

public sealed record NewKey(KeyRole Role, string? Name = null);

/// <summary>An organization's API keys: issue, list, rotate, revoke (admin keys only).</summary>
/// <remarks>
/// Each write honours the Idempotency-Key header like every other write; the answers that carry a
/// secret (issue, rotate) are stored sealed (see <see cref="IdempotentWriter.PostAsync"/>), so a
/// retried "create key" gets the first key back, never a second one, and the database never holds
/// a readable secret.
/// </remarks>
public static class KeysApi
{
    public static RouteGroupBuilder MapKeysApi(this RouteGroupBuilder v1)
    {
        var keys = v1.MapGroup("/keys").WithTags("Keys").RequireAuthorization(CallerClaims.Admin);
        keys.MapGet("/", ListAsync).WithName("ListKeys").WithSummary("The organization's keys (never their secrets).");
        keys.MapPost("/", IssueAsync).WithName("IssueKey").WithSummary("Issues a read, write or admin key; the secret is shown once.");
        keys.MapPost("/{keyId}/rotate", RotateAsync).Refuses(StatusCodes.Status404NotFound).WithName("RotateKey").WithSummary("Gives a key a new secret; the old one stops working at once.");
        keys.MapDelete("/{keyId}", RevokeAsync).Refuses(StatusCodes.Status404NotFound).WithName("RevokeKey").WithSummary("Revokes a key; it is refused from the next request on.");
        return v1;
    }

    private static async Task<Ok<IReadOnlyList<KeyView>>> ListAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await Tenants.ListKeysAsync(db, http.User.Caller().OrgId, http.RequestAborted));

    private static async Task<CreatedAnswer<IssuedKey>> IssueAsync(NewKey request, HttpContext http, LedgerDatabase db, IdempotentWriter writer)
    {
        string? issued = null;
        try
        {
            return await writer.PostCreatedAsync(http, request, async posting =>
            {
                var key = await Tenants.IssueKeyAsync(posting, request.Role, request.Name);
                issued = key.KeyId;
                return key;
            }, sealAnswer: true);
        }
        finally
        {
            if (issued is not null) db.Catalog.InvalidateKey(issued);
        }
    }

    private static async Task<OkAnswer<IssuedKey>> RotateAsync(string keyId, HttpContext http, LedgerDatabase db, IdempotentWriter writer)
    {
        try
        {
            return await writer.PostOkAsync(http, new { keyId },
                posting => Tenants.RotateKeyAsync(posting, keyId), sealAnswer: true);
        }
        finally
        {
            // After the commit: the old secret is refused from the next request on.
            db.Catalog.InvalidateKey(keyId);
        }
    }

    private static async Task<NoContentAnswer> RevokeAsync(string keyId, HttpContext http, LedgerDatabase db, IdempotentWriter writer)
    {
        try
        {
            return await writer.PostNoContentAsync(http, new { keyId },
                posting => Tenants.RevokeKeyAsync(posting, keyId));
        }
        finally
        {
            db.Catalog.InvalidateKey(keyId);
        }
    }
}
