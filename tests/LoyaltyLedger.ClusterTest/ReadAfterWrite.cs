using System.Diagnostics;
using System.Text.Json;

namespace LoyaltyLedger.ClusterTest;

/// <summary>A customer of the run with the loyalty account the vault reads by.</summary>
public sealed record Member(long CustomerId, string AccountNumber);

/// <summary>What one run of write-read pairs saw.</summary>
public sealed class PairCounts
{
    public long Pairs;
    public long PairsWithToken;
    public long PairsAfterFault;
    public long StaleLedgerReads;
    public long StaleVaultReads;
    public long StaleWithoutTokenLedger;
    public long StaleWithoutTokenVault;
    public long WriteErrors;
    public long ReadErrors;
    public long AnswersWithoutToken;
    public TimeSpan Elapsed;
    public readonly List<string> Samples = [];

    public long Stale => StaleLedgerReads + StaleVaultReads;
    public long StaleWithoutToken => StaleWithoutTokenLedger + StaleWithoutTokenVault;

    public void Sample(string line)
    {
        lock (Samples) { if (Samples.Count < 5) Samples.Add(line); }
    }
}

/// <summary>
/// Clients that each write a bill for their own customer through HAProxy and at once read it back
/// through both read APIs: the points-ledger read (newest first: its first entry must be the bill's
/// event) and the vault history (oldest first: the movement at the client's count of bills must be
/// the bill). A read that does not show the write is stale. With tokens, each read sends back the
/// Ledger-Consistency-Token of the write's answer.
/// </summary>
public sealed class ReadAfterWrite(ClusterClient client, Uri front, long programId, string storeCode, string runId)
{
    /// <summary>
    /// Runs one client per member (bill numbers and keys marked with <paramref name="scenario"/>) until <paramref name="pairs"/> pairs are done or
    /// <paramref name="limit"/> has passed. <paramref name="tokens"/>: every pair sends the token
    /// (true), none does (false), or every other pair does (null).
    /// </summary>
    public async Task<PairCounts> RunAsync(string scenario, IReadOnlyList<Member> members, long pairs, TimeSpan limit, bool? tokens,
        Func<bool>? afterFault = null)
    {
        var counts = new PairCounts();
        var issued = 0L;
        using var stop = new CancellationTokenSource(limit);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(members.Select((member, index) => Task.Run(async () =>
        {
            var bills = 0;
            for (var seq = 0; !stop.IsCancellationRequested && Interlocked.Increment(ref issued) <= pairs; seq++)
            {
                var withToken = tokens ?? (seq % 2 == 0);
                var number = $"{runId}-{scenario}{index}-{seq}";
                var (eventId, token) = await WriteAsync(member, number, counts, stop.Token);
                if (eventId is null) break;
                bills++;
                if (token is null) Interlocked.Increment(ref counts.AnswersWithoutToken);
                var sent = withToken ? token : null;
                var ledgerFresh = await ReadLedgerAsync(member, eventId.Value, sent, counts, stop.Token);
                var vaultFresh = await ReadVaultAsync(member, bills, number, sent, counts, stop.Token);
                if (ledgerFresh is null || vaultFresh is null) continue;
                Interlocked.Increment(ref counts.Pairs);
                if (withToken) Interlocked.Increment(ref counts.PairsWithToken);
                if (afterFault?.Invoke() == true) Interlocked.Increment(ref counts.PairsAfterFault);
                if (withToken)
                {
                    if (ledgerFresh == false) Interlocked.Increment(ref counts.StaleLedgerReads);
                    if (vaultFresh == false) Interlocked.Increment(ref counts.StaleVaultReads);
                }
                else
                {
                    if (ledgerFresh == false) Interlocked.Increment(ref counts.StaleWithoutTokenLedger);
                    if (vaultFresh == false) Interlocked.Increment(ref counts.StaleWithoutTokenVault);
                }
            }
        }, CancellationToken.None)));
        counts.Elapsed = clock.Elapsed;
        return counts;
    }

    /// <summary>The bill, retried under its Idempotency-Key on a connection error or a 5xx (each failed attempt counts as an error).</summary>
    private async Task<(long? EventId, string? Token)> WriteAsync(Member member, string number, PairCounts counts, CancellationToken stop)
    {
        var body = new { customerId = member.CustomerId, billNumber = number, amount = 10.50m, storeCode, programId };
        for (var attempt = 0; attempt < 10 && !stop.IsCancellationRequested; attempt++)
        {
            try
            {
                var answer = await client.PostAsync(front, "/v1/transactions", body, $"cl-{number}", stop);
                if (answer.Status == 201) return (answer.Json().GetProperty("eventId").GetInt64(), answer.Token);
                counts.Sample($"write {number}: {answer.Status} {Short(answer.Body)}");
                Interlocked.Increment(ref counts.WriteErrors);
                if (answer.Status is >= 400 and < 500) return (null, null);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                if (stop.IsCancellationRequested) break;
                counts.Sample($"write {number}: {ex.Message}");
                Interlocked.Increment(ref counts.WriteErrors);
            }
            await Task.Delay(50, CancellationToken.None);
        }
        return (null, null);
    }

    /// <summary>True when the ledger's newest entry is the bill's event; false when stale; null on an error.</summary>
    private async Task<bool?> ReadLedgerAsync(Member member, long eventId, string? token, PairCounts counts, CancellationToken stop)
    {
        var path = $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={member.CustomerId}&source=INSTORE&limit=1&offset=0";
        var answer = await ReadAsync(path, token, counts, stop);
        if (answer is null) return null;
        var entries = answer.Value.GetProperty("ledgerEntries");
        return entries.GetArrayLength() > 0 && entries[0].GetProperty("eventLogId").GetInt64() == eventId;
    }

    /// <summary>True when the vault's movement number <paramref name="bills"/> is the bill; false when stale; null on an error.</summary>
    private async Task<bool?> ReadVaultAsync(Member member, int bills, string number, string? token, PairCounts counts, CancellationToken stop)
    {
        var path = $"/api/v1.0/LoyaltyVault/Account/{member.AccountNumber}/LoyaltyPrograms/{programId}/History?offset={bills - 1}&limit=1";
        var answer = await ReadAsync(path, token, counts, stop);
        if (answer is null) return null;
        return answer.Value.GetArrayLength() == 1 && answer.Value[0].GetProperty("receiptNr").GetString() == number;
    }

    private async Task<JsonElement?> ReadAsync(string path, string? token, PairCounts counts, CancellationToken stop)
    {
        try
        {
            var answer = await client.GetAsync(front, path, token, stop);
            if (answer.Status == 200) return answer.Json();
            counts.Sample($"GET {path}: {answer.Status} {Short(answer.Body)}");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            // The run's time limit cutting a read short is no error of the cluster's.
            if (stop.IsCancellationRequested) return null;
            counts.Sample($"GET {path}: {ex.Message}");
        }
        Interlocked.Increment(ref counts.ReadErrors);
        return null;
    }

    private static string Short(string body) => body.Length > 200 ? body[..200] + "..." : body;
}
