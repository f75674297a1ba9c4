using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Runs a write in one transaction, and makes it idempotent under the client's
/// <c>Idempotency-Key</c> header: the key is claimed by inserting it in the same transaction as the
/// posting (a unique constraint, not look-then-insert), and the response is stored with it. A replay
/// returns the stored response and writes nothing; the same key with another body is refused with 409.
/// </summary>
public sealed class IdempotentWriter(LedgerDatabase database, TimeProvider clock, IOptions<JsonOptions> json)
{
    public const string HeaderName = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";
    private const int MaxKeyLength = 200;

    private readonly JsonSerializerOptions _json = json.Value.SerializerOptions;

    /// <summary>Posts <paramref name="work"/>; its result is answered with <paramref name="status"/>.</summary>
    public async Task<IResult> PostAsync<TRequest, TResult>(HttpContext http, TRequest request, int status, Func<Posting, Task<TResult>> work)
    {
        var caller = http.User.Caller();
        var ct = http.RequestAborted;
        string? key = http.Request.Headers[HeaderName];
        if (key is not null && (key.Length == 0 || key.Length > MaxKeyLength))
            throw LedgerException.Invalid($"An {HeaderName} is 1 to {MaxKeyLength} characters.");
        var requestHash = Hash(http.Request.Method, http.Request.Path, JsonSerializer.Serialize(request, _json));

        var catalogChanged = false;
        (bool Replay, string? Body) outcome;
        try
        {
            outcome = await WriteAsync();
        }
        finally
        {
            // After the commit (or the rollback): requests that read the programs while this one was
            // changing them may have cached what they saw; they read again.
            if (catalogChanged) database.Catalog.InvalidatePrograms(caller.OrgId);
        }

        if (!outcome.Replay) return Results.Content(outcome.Body, "application/json", Encoding.UTF8, status);
        return await ReplayAsync(http, caller, key!, requestHash, ct);

        Task<(bool Replay, string? Body)> WriteAsync() => database.WriteAsync(async (connection, transaction) =>
        {
            var posting = new Posting(connection, transaction, database.Dialect, caller.OrgId, clock.GetUtcNow(), caller.KeyId)
            {
                Catalog = database.Catalog,
            };
            if (key is not null)
            {
                // On PostgreSQL this insert waits for a concurrent transaction holding the same key and
                // then inserts nothing: the later request becomes a replay, never a second posting.
                var claimed = await posting.ExecuteAsync(
                    """
                    INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at)
                    VALUES (@org, @key, @requestHash, 0, NULL, @now)
                    ON CONFLICT (org_id, idempotency_key) DO NOTHING
                    """,
                    new { org = caller.OrgId, key, requestHash, now = posting.NowMs });
                if (claimed == 0) return (Replay: true, Body: (string?)null);
            }

            TResult result;
            try
            {
                result = await work(posting);
            }
            finally
            {
                catalogChanged |= posting.CatalogChanged;
            }
            var body = JsonSerializer.Serialize(result, _json);
            // The audit record and the stored answer in one round trip.
            var batch = posting.Batch();
            WriteAudit.Add(batch, caller.OrgId, caller.KeyId, http.Request.Method, http.Request.Path, status, key, posting.NowMs);
            if (key is not null)
            {
                batch.Execute(
                    "UPDATE idempotency_keys SET status_code = @status, response_body = @body WHERE org_id = @org AND idempotency_key = @key",
                    new { status, body, org = caller.OrgId, key });
            }
            await batch.RunAsync(ct);
            return (Replay: false, Body: (string?)body);
        }, ct);
    }

    private async Task<IResult> ReplayAsync(HttpContext http, Caller caller, string key, string requestHash, CancellationToken ct)
    {
        var stored = await database.ReadAsync(c => c.QuerySingleAsync<(string RequestHash, long StatusCode, string? ResponseBody)>(
            "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE org_id = @org AND idempotency_key = @key",
            new { org = caller.OrgId, key }), ct);
        if (stored.RequestHash != requestHash)
        {
            throw new LedgerException(ErrorCodes.IdempotencyKeyReused,
                $"The {HeaderName} '{key}' was already used for a different request.", 409);
        }
        http.Response.Headers[ReplayedHeader] = "true";
        return Results.Content(stored.ResponseBody, "application/json", Encoding.UTF8, (int)stored.StatusCode);
    }

    /// <summary>
    /// Records a write that did not go through <see cref="PostAsync"/> (key management, the expiry
    /// run), once it has succeeded.
    /// </summary>
    public Task RecordAsync(HttpContext http, int status)
    {
        var caller = http.User.Caller();
        return database.WriteAsync(async (connection, transaction) =>
        {
            await WriteAudit.RecordAsync(connection, transaction, caller.OrgId, caller.KeyId, http.Request.Method, http.Request.Path, status,
                http.Request.Headers[HeaderName], clock.GetUtcNow().ToUnixTimeMilliseconds());
            return 0;
        }, http.RequestAborted);
    }

    private static string Hash(string method, string path, string body) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{method} {path}\n{body}")));
}
