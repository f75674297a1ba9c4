using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Idempotency;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Telemetry;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Every write of the HTTP APIs goes through here, and so honours the client's
/// <c>Idempotency-Key</c> header through the one <see cref="IdempotencyStore"/>: a replay returns the
/// stored response (status and body, with <c>Idempotent-Replayed: true</c>) and writes nothing; the
/// same key with another request is refused with 409 <c>idempotency_key_reused</c>.
/// </summary>
/// <remarks>
/// The store holds the rules (claim, answer, lease, release); this class adds what HTTP brings: the
/// header, what makes two requests the same (method, path, body), the status the endpoint declares,
/// the sealing of answers that hold a secret, the audit record, and the answer of a replay. A write
/// in one transaction (<see cref="PostAsync"/>) claims the key in that same transaction, so the key
/// and the write commit or roll back together. A write that takes several transactions
/// (<see cref="RunAsync"/>, the expiry run) claims the key first, as pending, and stores the answer
/// when it is done.
/// </remarks>
public sealed class IdempotentWriter(LedgerDatabase database, TimeProvider clock, IOptions<JsonOptions> json)
{
    public const string HeaderName = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";
    public const string InProgressCode = "idempotency_key_in_progress";
    private const int MaxKeyLength = 200;

    private const string SealedPrefix = "sealed:v1:";

    private readonly JsonSerializerOptions _json = json.Value.SerializerOptions;
    private readonly IdempotencyStore _store = new(database);

    /// <summary>
    /// Posts <paramref name="work"/> in one transaction; its result is answered with the status the
    /// endpoint declares by its typed result (<see cref="CreatedAnswer{T}"/>, ...) (204: no body). With <paramref name="sealAnswer"/> (an answer that
    /// holds a key's secret) the stored answer is encrypted with a key derived from the caller's own
    /// secret, so the database never holds a readable secret and only the same credentials can replay it.
    /// </summary>
    private async Task<WrittenAnswer> PostAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<Posting, Task<TResult>> work,
        bool sealAnswer = false)
    {
        // The status the endpoint declares (and the OpenAPI document shows): one source for both.
        var status = ApiContract.WriteStatus(http);
        var caller = http.User.Caller();
        var key = HeaderKey(http);
        var requestHash = RequestHash(http, request, sealAnswer ? caller.KeyId : null);
        var kind = Kind(http);
        using var activity = LedgerTelemetry.Source.StartActivity("posting " + kind);
        activity?.SetTag("ledger.posting.kind", kind);
        activity?.SetTag("ledger.org_id", caller.OrgId);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = "failed";
        (bool Replay, string? Body, WalPosition? Position) outcome;
        try
        {
            outcome = await WriteOnceAsync(http, caller, key, requestHash, status, work, sealAnswer);
            result = outcome.Replay ? "replayed" : "committed";
        }
        catch (LedgerException refused) when (refused.Status < 500)
        {
            result = "refused";
            throw;
        }
        finally
        {
            activity?.SetTag("ledger.posting.outcome", result);
            var tags = new System.Diagnostics.TagList { { "kind", kind }, { "outcome", result } };
            LedgerTelemetry.Postings.Add(1, tags);
            LedgerTelemetry.PostingDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, tags);
        }
        if (!outcome.Replay)
        {
            ConsistencyTokens.Answer(http, outcome.Position);
            return Answer(status, outcome.Body);
        }
        LedgerTelemetry.IdempotentReplays.Add(1, new KeyValuePair<string, object?>("kind", kind));
        return await ReplayAsync(http, caller, key!, requestHash, http.RequestAborted);
    }

    /// <summary>A write that answers 201 with its result (<see cref="PostAsync"/>).</summary>
    public async Task<CreatedAnswer<TResult>> PostCreatedAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<Posting, Task<TResult>> work,
        bool sealAnswer = false) => new(await PostAsync(http, request, work, sealAnswer));

    /// <summary>A write that answers 200 with its result (<see cref="PostAsync"/>).</summary>
    public async Task<OkAnswer<TResult>> PostOkAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<Posting, Task<TResult>> work,
        bool sealAnswer = false) => new(await PostAsync(http, request, work, sealAnswer));

    /// <summary>A write that answers 202 with what it queued (<see cref="PostAsync"/>).</summary>
    public async Task<AcceptedAnswer<TResult>> PostAcceptedAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<Posting, Task<TResult>> work) =>
        new(await PostAsync(http, request, work));

    /// <summary>A write that answers 204 without a body (<see cref="PostAsync"/>).</summary>
    public async Task<NoContentAnswer> PostNoContentAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<Posting, Task<TResult>> work) =>
        new(await PostAsync(http, request, work));

    /// <summary>A write of several transactions that answers 200 with its result (<see cref="RunAsync"/>).</summary>
    public async Task<OkAnswer<TResult>> RunOkAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<CancellationToken, Task<TResult>> work) =>
        new(await RunAsync(http, request, work));

    /// <summary>The key a support console form carries is stored under this prefix, apart from clients' keys.</summary>
    public const string FormKeyPrefix = "console:";

    /// <summary>
    /// A write of the support console's forms, through the same store as the API's writes: the key is
    /// the form's own (a fresh one each time the form is shown, so a double click or a resubmitted
    /// page posts once), the write is attributed to the signed-in key and audited like an API write.
    /// Returns the write's result, or on a replay the result the first post stored.
    /// </summary>
    public async Task<(TResult Result, bool Replayed)> PostFormAsync<TRequest, TResult>(HttpContext http, string? formKey, TRequest request,
        Func<Posting, Task<TResult>> work)
    {
        if (string.IsNullOrEmpty(formKey) || formKey.Length > MaxKeyLength - FormKeyPrefix.Length)
            throw LedgerException.Invalid("The form has no valid key: reload the page and submit it again.");
        var caller = http.User.Caller();
        var key = FormKeyPrefix + formKey;
        var requestHash = RequestHash(http, request, null);
        var result = default(TResult);
        var outcome = await WriteOnceAsync(http, caller, key, requestHash, StatusCodes.Status201Created, async posting => result = await work(posting),
            sealAnswer: false);
        if (!outcome.Replay) return (result!, false);

        var stored = await _store.ReadAsync(IdempotencyKey.Request(caller.OrgId, key), http.RequestAborted);
        if (stored is { } s && s.RequestHash != requestHash)
            throw new LedgerException(ErrorCodes.IdempotencyKeyReused, "This form was already submitted with other values: reload the page to submit new ones.", 409);
        if (stored is not { IsPending: false, Body: { } body })
            throw new LedgerException(InProgressCode, "This form is still being submitted; reload the page in a moment.", 409);
        return (JsonSerializer.Deserialize<TResult>(body, _json)!, true);
    }

    /// <summary>
    /// Claims the Idempotency-Key (if any) and runs <paramref name="work"/> in the same transaction,
    /// storing its answer with the key and recording the write in the audit; a key already claimed
    /// makes the call a replay, which leaves nothing written (what its first round trip wrote is
    /// rolled back with it).
    /// </summary>
    private async Task<(bool Replay, string? Body, WalPosition? Position)> WriteOnceAsync<TResult>(HttpContext http, Caller caller, string? key, string requestHash, int status,
        Func<Posting, Task<TResult>> work, bool sealAnswer)
    {
        var ct = http.RequestAborted;
        var catalogChanged = false;
        try
        {
            var ((replay, body), position) = await database.WriteAndLocateAsync(async (connection, transaction) =>
            {
                // Once it has started, a write runs to its end even if its client goes away (the
                // client's retry then gets its answer): it shares its transaction and its connection
                // with other clients' writes (group commit), and a database cancels a statement per
                // session, not per write, so a cancel sent for this one could land on a neighbour's.
                // The client's token only keeps a write that has not started from starting.
                var untilDone = CancellationToken.None;
                var posting = new Posting(connection, transaction, database.Dialect, caller.OrgId, clock.GetUtcNow(), caller.KeyId, untilDone)
                {
                    Catalog = database.Catalog,
                };
                // A key already claimed (on PostgreSQL, by a concurrent request this one waited for)
                // makes the request a replay, never a second posting. The claim goes with the
                // posting's first statements, in their round trip; a key found claimed there stops the
                // posting (KeyAlreadyClaimed), and its transaction's work is rolled back.
                var storeKey = key is null ? null : IdempotencyKey.Request(caller.OrgId, key);
                var claim = storeKey is null ? null : IdempotencyStore.ClaimFirst(storeKey, requestHash, posting.NowMs);
                if (claim is not null) posting.SendFirst(claim);

                TResult result;
                try
                {
                    result = await work(posting);
                }
                catch (Exception) when (claim is { Pending: true })
                {
                    // Refused before its first statement (a request refused on sight): the claim goes
                    // now, so that a replay is answered as one, whatever its request would meet today.
                    await posting.SendFirstAsync();
                    throw;
                }
                finally
                {
                    catalogChanged |= posting.CatalogChanged;
                }
                var body = status == StatusCodes.Status204NoContent ? null : JsonSerializer.Serialize(result, _json);
                // The audit record, the stored answer and the posting's outbox rows are left for the end
                // of the transaction: with those of every write of a group-commit batch, in one round
                // trip before its commit. A replay reads the answer after the commit.
                var batch = posting.Batch();
                WriteAudit.Add(batch, caller.OrgId, caller.KeyId, http.Request.Method, http.Request.Path, status, key, posting.NowMs);
                posting.AddAnnouncements(batch);
                claim?.AddAnswerAtEnd(batch, status, sealAnswer && body is not null ? Seal(body, http, caller, key!) : body);
                await batch.RunAsync(untilDone);
                // The claim has gone by now (with the posting's first statements, or with these).
                if (claim is { Claimed: false }) throw new InvalidOperationException("The write's Idempotency-Key claim was sent but never settled.");
                return (Replay: false, Body: body);
            }, ct, postingsOnly: true);
            return (replay, body, position);
        }
        catch (KeyAlreadyClaimed)
        {
            return (true, null, null);
        }
        finally
        {
            // After the commit (or the rollback): requests that read the programs while this one was
            // changing them may have cached what they saw; they read again.
            if (catalogChanged) database.Catalog.InvalidatePrograms(caller.OrgId);
        }
    }

    /// <summary>
    /// Runs a write that takes several transactions of its own (the expiry run settles each wallet by a
    /// posting of its own, many of them sharing group-commit transactions). The key is claimed first, as pending; a request with the same key meanwhile is refused
    /// with 409 <see cref="InProgressCode"/>; a failed or refused run releases the key; the answer is
    /// stored when the run is done.
    /// </summary>
    private async Task<WrittenAnswer> RunAsync<TRequest, TResult>(HttpContext http, TRequest request, Func<CancellationToken, Task<TResult>> work)
    {
        var status = ApiContract.WriteStatus(http);
        var caller = http.User.Caller();
        var ct = http.RequestAborted;
        var key = HeaderKey(http);
        var requestHash = RequestHash(http, request, null);
        var nowMs = clock.GetUtcNow().ToUnixTimeMilliseconds();

        if (key is null)
        {
            var unkeyed = JsonSerializer.Serialize(await work(ct), _json);
            await database.WriteAsync(async (c, tx) =>
            {
                await WriteAudit.RecordAsync(c, tx, caller.OrgId, caller.KeyId, http.Request.Method, http.Request.Path, status, null, nowMs, CancellationToken.None);
                return 0;
            }, CancellationToken.None);
            await AnswerTokenAsync(http);
            return Answer(status, unkeyed);
        }

        var claim = await _store.ClaimPendingAsync(IdempotencyKey.Request(caller.OrgId, key), requestHash, nowMs, ct);
        if (claim is null) return await ReplayAsync(http, caller, key, requestHash, ct);

        TResult result;
        try
        {
            result = await work(ct);
        }
        catch
        {
            // A refused or failed run does not burn its key, as a rolled-back posting does not.
            await _store.ReleaseAsync(claim);
            throw;
        }
        var body = JsonSerializer.Serialize(result, _json);
        // Stored even when the client has gone: its retry gets this answer.
        var mine = await _store.AnswerPendingAsync(claim, status, body,
            batch => WriteAudit.Add(batch, caller.OrgId, caller.KeyId, http.Request.Method, http.Request.Path, status, key, nowMs));
        // Not ours any more (a retry took over a claim this slow run still held): that run's answer stands.
        if (!mine) return await ReplayAsync(http, caller, key, requestHash, ct);
        await AnswerTokenAsync(http);
        return Answer(status, body);
    }

    /// <summary>
    /// The token of an answer that is not one commit's (a run of several transactions, a replay): the
    /// primary's position now, at or past every commit the answer stands for.
    /// </summary>
    private async Task AnswerTokenAsync(HttpContext http)
    {
        try
        {
            ConsistencyTokens.Answer(http, await database.CurrentPositionAsync(http.RequestAborted));
        }
        catch (System.Data.Common.DbException)
        {
            // The write stands; its answer goes without a token (a read without one is bounded by the replicas' lag).
        }
    }

    /// <summary>The endpoint's operation id (AddTransaction, Redeem, ...): the posting kind in metrics and traces.</summary>
    private static string Kind(HttpContext http) =>
        http.GetEndpoint()?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName ?? "unknown";

    private async Task<WrittenAnswer> ReplayAsync(HttpContext http, Caller caller, string key, string requestHash, CancellationToken ct)
    {
        var stored = await _store.ReadAsync(IdempotencyKey.Request(caller.OrgId, key), ct);
        if (stored is { } s && s.RequestHash != requestHash)
        {
            throw new LedgerException(ErrorCodes.IdempotencyKeyReused,
                $"The {HeaderName} '{key}' was already used for a different request.", 409);
        }
        if (stored is not { IsPending: false } done)
        {
            // Claimed by a request still running (or one that just released it after failing).
            http.Response.Headers.RetryAfter = "1";
            return new WrittenAnswer(409, JsonSerializer.Serialize(ErrorResponses.Problem(409, InProgressCode,
                $"A request with the {HeaderName} '{key}' is still running; retry it shortly."), _json), "application/problem+json");
        }
        var body = done.Body;
        if (body is not null && body.StartsWith(SealedPrefix, StringComparison.Ordinal))
        {
            body = Unseal(body, http, caller, key) ?? throw new LedgerException(ErrorCodes.IdempotencyKeyReused,
                $"The {HeaderName} '{key}' was used by a request whose answer only its own credentials can read.", 409);
        }
        http.Response.Headers[ReplayedHeader] = "true";
        if (done.StatusCode < 400) await AnswerTokenAsync(http);
        return Answer(done.StatusCode, body);
    }

    private static WrittenAnswer Answer(int status, string? body) => new(status, body);

    private static string? HeaderKey(HttpContext http)
    {
        string? key = http.Request.Headers[HeaderName];
        if (key is not null && (key.Length == 0 || key.Length > MaxKeyLength))
            throw LedgerException.Invalid($"An {HeaderName} is 1 to {MaxKeyLength} characters.");
        return key;
    }

    /// <summary>What makes two requests the same: method, path and body (and, for sealed answers, the key that asked).</summary>
    private string RequestHash<TRequest>(HttpContext http, TRequest request, string? callerKeyId) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{http.Request.Method} {http.Request.Path}\n{JsonSerializer.Serialize(request, _json)}" + (callerKeyId is null ? "" : "\n" + callerKeyId))));

    // AES-GCM under a key derived (HKDF-SHA256) from the secret the caller presented, bound to the
    // organization and the Idempotency-Key. The database holds only the secret's hash, so what it
    // stores cannot be read without the credentials of the request that wrote it.
    private static string Seal(string body, HttpContext http, Caller caller, string key)
    {
        var plain = Encoding.UTF8.GetBytes(body);
        var sealedBytes = new byte[12 + 16 + plain.Length];
        var nonce = sealedBytes.AsSpan(0, 12);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(SealingKey(http, caller, key), 16);
        aes.Encrypt(nonce, plain, sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16));
        return SealedPrefix + Convert.ToBase64String(sealedBytes);
    }

    private static string? Unseal(string stored, HttpContext http, Caller caller, string key)
    {
        try
        {
            var sealedBytes = Convert.FromBase64String(stored[SealedPrefix.Length..]);
            if (sealedBytes.Length < 28) return null;
            var plain = new byte[sealedBytes.Length - 28];
            using var aes = new AesGcm(SealingKey(http, caller, key), 16);
            aes.Decrypt(sealedBytes.AsSpan(0, 12), sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), plain);
            return Encoding.UTF8.GetString(plain);
        }
        catch (Exception ex) when (ex is CryptographicException or FormatException)
        {
            return null;
        }
    }

    private static byte[] SealingKey(HttpContext http, Caller caller, string key)
    {
        BasicAuthenticationHandler.TryReadCredentials(http.Request.Headers.Authorization, out _, out var secret);
        return HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(secret), 32,
            info: Encoding.UTF8.GetBytes($"loyaltyledger idempotent answer v1\n{caller.OrgId}\n{caller.KeyId}\n{key}"));
    }
}
