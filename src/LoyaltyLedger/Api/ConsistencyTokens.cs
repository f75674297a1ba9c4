using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Server.Api;

/// <summary>Marks a read that a read replica may serve: it takes the <c>Ledger-Consistency-Token</c> request header.</summary>
public sealed record ReplicaReadMetadata;

/// <summary>
/// Read-your-writes across read replicas (README, "Read replicas and read-your-writes"). Every
/// successful write answers with a <c>Ledger-Consistency-Token</c> header (on PostgreSQL: the WAL
/// position of its commit); a read that sends it back is served by a replica only once the replica
/// has replayed that position, else by the primary. On SQLite writes carry no token; a token sent to
/// a read is still checked, and then changes nothing (there is only the one database).
/// </summary>
public static class ConsistencyTokens
{
    public const string HeaderName = "Ledger-Consistency-Token";

    /// <summary>What the document says of the header (the request's and the answer's).</summary>
    public const string RequestDescription =
        "The Ledger-Consistency-Token of a write this client made (its answer's header): the read then sees that write, served by a read " +
        "replica only once the replica has replayed it (else by the primary). Several tokens (comma-separated) wait for the latest. " +
        "Optional; without it a replica within the configured lag may serve the read. A malformed token is refused with 400.";

    public const string ResponseDescription =
        "Where this write's commit is in the database's log (PostgreSQL only; absent on SQLite). Send it back on a read to read this write " +
        "(read-your-writes) even when a read replica serves the read. Treat it as opaque.";

    /// <summary>Marks a read that a replica may serve (the OpenAPI document then declares the request header).</summary>
    public static TBuilder ServedByReplicas<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder
    {
        endpoint.WithMetadata(new ReplicaReadMetadata());
        return endpoint;
    }

    /// <summary>
    /// The consistency of a read that a replica may serve: after the latest token the client sent, if
    /// any. Null, with <paramref name="problem"/>, when a token is malformed.
    /// </summary>
    public static ReadConsistency? TryRead(HttpContext http, out string? problem)
    {
        problem = null;
        WalPosition? latest = null;
        foreach (var value in http.Request.Headers[HeaderName])
        {
            // An empty header is no token (a client that echoes the header of an answer that had none).
            if (string.IsNullOrWhiteSpace(value)) continue;
            foreach (var part in value.Split(',', StringSplitOptions.TrimEntries))
            {
                if (!WalPosition.TryParse(part, out var position))
                {
                    var shown = part.Length <= 40 ? part : part[..40] + "...";
                    problem = $"The {HeaderName} '{shown}' is not a token this service gave: send back the {HeaderName} header of a write's answer as it was (e.g. 0/1A2B3C8), or none.";
                    return null;
                }
                if (latest is null || position > latest.Value) latest = position;
            }
        }
        return ReadConsistency.Replica(latest);
    }

    /// <summary>The consistency of a read that a replica may serve; a malformed token is refused with 400 <c>invalid_request</c>.</summary>
    public static ReadConsistency Read(HttpContext http) =>
        TryRead(http, out var problem) ?? throw LedgerException.Invalid(problem!);

    /// <summary>Puts a write's token on its answer (nothing on SQLite, which has none).</summary>
    public static void Answer(HttpContext http, WalPosition? position)
    {
        if (position is { } p) http.Response.Headers[HeaderName] = p.ToString();
    }
}
