using System.Diagnostics;
using LoyaltyLedger.FaultTest;
using LoyaltyLedger.Organizations;

namespace LoyaltyLedger.ClusterTest;

/// <summary>
/// The scenarios against a running cluster (scripts/cluster.sh), in an order where each leaves the
/// cluster as the next needs it: read-your-writes with tokens, the same without, the catalog and
/// keys seen across servers, the replica stopped mid-run, one server SIGKILLed mid-run. Each prints
/// one <c>cluster test (NAME): PASS|FAIL</c> line, which scripts/cluster-test.sh counts; the exit
/// code is 0 only when every scenario passed.
/// </summary>
public static class ClusterRun
{
    public static async Task<int> MainAsync(string[] args)
    {
        ClusterSettings settings;
        try
        {
            settings = ClusterSettings.Parse(args);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return 2;
        }
        Directory.CreateDirectory(settings.WorkDir);
        var runId = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString();
        var faultSettings = FaultSettings.Parse(["--mode", "postgres", "--postgres", settings.Postgres, "--postgres-script", settings.ClusterScript,
            "--server-dll", settings.ServerDll, "--work", settings.WorkDir]);
        var storageArgs = $"--postgres '{settings.Postgres}'";
        var failed = 0;
        try
        {
            var (orgId, keyId, secret) = await FaultRun.CreateOrganizationAsync(faultSettings, storageArgs, $"cluster-test-{runId}");
            using var client = new ClusterClient(keyId, secret);
            var program = (await client.MustPostAsync(settings.Front, "/v1/programs", new { name = "Cluster test", earnRate = "1" })).GetProperty("programId").GetInt64();
            var store = $"cl-store-{runId}";
            await client.MustPostAsync(settings.Front, "/v1/stores", new { code = store });
            var pairs = new ReadAfterWrite(client, settings.Front, program, store, runId);
            Console.WriteLine($"cluster test: front {settings.Front}, servers {string.Join(", ", settings.Servers)}; organization {orgId}, program {program}; {settings.Clients} clients");

            failed += await TokenReadsAsync(settings, client, pairs, runId) ? 0 : 1;
            failed += await PlainReadsAsync(settings, client, pairs, runId) ? 0 : 1;
            failed += await CatalogAcrossServersAsync(settings, client, program, runId) ? 0 : 1;
            failed += await ReplicaStoppedAsync(settings, client, pairs, runId) ? 0 : 1;
            failed += await ServerKilledAsync(settings, faultSettings, storageArgs, runId) ? 0 : 1;
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or HttpRequestException or IOException)
        {
            await Console.Error.WriteLineAsync($"cluster test (set-up): FAIL: {ex.Message}");
            return 1;
        }
        return failed == 0 ? 0 : 1;
    }

    private static async Task<List<Member>> MembersAsync(ClusterSettings settings, ClusterClient client, string runId, string scenario)
    {
        var members = new List<Member>();
        for (var i = 0; i < settings.Clients; i++)
        {
            var account = $"CL{runId}{scenario}{i:D2}";
            var customer = await client.MustPostAsync(settings.Front, "/v1/customers",
                new { firstName = "Cluster", lastName = $"{scenario} {i}", accountNumbers = new[] { account } });
            members.Add(new Member(customer.GetProperty("customerId").GetInt64(), account));
        }
        // The members are readable through the front, as the pairs will read them, before any pair
        // starts: a read without a token of a member the replica has not received yet answers 404
        // (11012, no such customer), which is not the stale read a scenario counts. Asked for up to 10 s.
        foreach (var member in members)
        {
            var path = $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={member.CustomerId}&source=INSTORE&limit=1&offset=0";
            for (var wait = Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(10); await Task.Delay(50))
                if ((await client.GetAsync(settings.Front, path)) is not { Status: 404 } unknown || !unknown.Body.Contains("11012", StringComparison.Ordinal)) break;
        }
        return members;
    }

    private static bool Report(string name, PairCounts c, List<string> failures, string extra = "")
    {
        Console.WriteLine($"  {c.Pairs} write-read pairs in {c.Elapsed.TotalSeconds:0.0} s ({c.Pairs / Math.Max(c.Elapsed.TotalSeconds, 0.001):0} a second), " +
            $"{c.PairsWithToken} with a token; stale reads with a token: points-ledger {c.StaleLedgerReads}, vault {c.StaleVaultReads}; " +
            $"without: points-ledger {c.StaleWithoutTokenLedger}, vault {c.StaleWithoutTokenVault}; write errors {c.WriteErrors}, read errors {c.ReadErrors}{extra}");
        foreach (var sample in c.Samples) Console.WriteLine($"    e.g. {sample}");
        foreach (var failure in failures) Console.WriteLine($"  FAIL: {failure}");
        Console.WriteLine(failures.Count == 0 ? $"cluster test ({name}): PASS" : $"cluster test ({name}): FAIL ({failures.Count} check(s))");
        return failures.Count == 0;
    }

    /// <summary>(a) Every read that sends the write's token shows the write: stale reads 0.</summary>
    private static async Task<bool> TokenReadsAsync(ClusterSettings settings, ClusterClient client, ReadAfterWrite pairs, string runId)
    {
        const string name = "read-your-writes with tokens";
        Console.WriteLine($"cluster test ({name}): {settings.TokenPairs} pairs, each write read back through both read APIs with its {ClusterClient.TokenHeader}");
        var members = await MembersAsync(settings, client, runId, "a");
        var c = await pairs.RunAsync("a", members, settings.TokenPairs, settings.PairLimit, tokens: true);
        var failures = new List<string>();
        if (c.AnswersWithoutToken > 0) failures.Add($"{c.AnswersWithoutToken} write answers without a {ClusterClient.TokenHeader} header");
        if (c.Stale > 0) failures.Add($"{c.Stale} stale reads with a token");
        if (c.WriteErrors + c.ReadErrors > 0) failures.Add($"{c.WriteErrors} write and {c.ReadErrors} read errors");
        if (c.Pairs < settings.TokenPairs) failures.Add($"only {c.Pairs} of {settings.TokenPairs} pairs within {settings.PairLimit.TotalSeconds:0} s");
        return Report(name, c, failures);
    }

    /// <summary>(b) The same without tokens: how many reads would have been stale is reported, not asserted.</summary>
    private static async Task<bool> PlainReadsAsync(ClusterSettings settings, ClusterClient client, ReadAfterWrite pairs, string runId)
    {
        const string name = "reads without tokens";
        Console.WriteLine($"cluster test ({name}): {settings.PlainPairs} pairs, no token sent");
        var members = await MembersAsync(settings, client, runId, "b");
        var c = await pairs.RunAsync("b", members, settings.PlainPairs, settings.PairLimit, tokens: false);
        var failures = new List<string>();
        if (c.WriteErrors + c.ReadErrors > 0) failures.Add($"{c.WriteErrors} write and {c.ReadErrors} read errors");
        if (c.Pairs < settings.PlainPairs) failures.Add($"only {c.Pairs} of {settings.PlainPairs} pairs within {settings.PairLimit.TotalSeconds:0} s");
        return Report(name, c, failures, $"\n  reads that would have been stale without a token: {c.StaleWithoutToken} of {2 * c.Pairs}");
    }

    /// <summary>(c) The replica stopped mid-run: reads go on, from the primary, with no error and none stale with a token.</summary>
    private static async Task<bool> ReplicaStoppedAsync(ClusterSettings settings, ClusterClient client, ReadAfterWrite pairs, string runId)
    {
        const string name = "replica stopped mid-run";
        Console.WriteLine($"cluster test ({name}): {settings.ReplicaRun.TotalSeconds:0} s of pairs (every other one with a token), " +
            $"the replica stopped at {settings.ReplicaStopAt.TotalSeconds:0} s");
        var members = await MembersAsync(settings, client, runId, "c");
        var stopped = 0;
        var stopper = Task.Run(async () =>
        {
            await Task.Delay(settings.ReplicaStopAt);
            var (exitCode, output) = await RunScriptAsync(settings.ClusterScript, "halt-replica", TimeSpan.FromSeconds(60));
            Volatile.Write(ref stopped, 1);
            return (exitCode, output);
        });
        var c = await pairs.RunAsync("c", members, long.MaxValue, settings.ReplicaRun, tokens: null, afterFault: () => Volatile.Read(ref stopped) == 1);
        var (stopExit, stopOutput) = await stopper;
        var failures = new List<string>();
        if (stopExit != 0) failures.Add($"stopping the replica failed ({stopExit}): {stopOutput}");
        if (c.Stale > 0) failures.Add($"{c.Stale} stale reads with a token");
        if (c.WriteErrors + c.ReadErrors > 0) failures.Add($"{c.WriteErrors} write and {c.ReadErrors} read errors");
        if (c.PairsAfterFault == 0) failures.Add("no pair completed after the replica stopped");
        return Report(name, c, failures, $"; {c.PairsAfterFault} pairs after the replica stopped");
    }

    /// <summary>
    /// Stores, tills and programs created through one server are used through the other at once (an
    /// unknown code or id is looked up in the database); a currency added through one server earns on
    /// the other within <see cref="CatalogCache.ProgramsTtl"/>; a key revoked through one server is
    /// refused by the other within <see cref="CatalogCache.KeysTtl"/>.
    /// </summary>
    private static async Task<bool> CatalogAcrossServersAsync(ClusterSettings settings, ClusterClient client, long program, string runId)
    {
        const string name = "catalog and keys across servers";
        var (one, two) = (settings.Servers[0], settings.Servers[1]);
        // The bound plus the time a request takes on a loaded machine; without an expiry the change
        // would never be seen, and the wait below gives up after 5 s more.
        var slack = TimeSpan.FromSeconds(1);
        Console.WriteLine($"cluster test ({name}): created or changed through {one}, used through {two}");
        var failures = new List<string>();
        var member = (await MembersAsync(settings, client, runId, "k"))[0];
        var bills = 0;
        async Task<ClusterClient.Answer> BillAsync(object extra)
        {
            var body = new Dictionary<string, object?> { ["customerId"] = member.CustomerId, ["billNumber"] = $"{runId}-k-{bills++}", ["amount"] = 20m };
            foreach (var property in extra.GetType().GetProperties()) body[property.Name] = property.GetValue(extra);
            return await client.PostAsync(two, "/v1/transactions", body);
        }

        // A store and till, then a program: created through server 1, named at once through server 2.
        var store = $"cl-k-store-{runId}";
        await client.MustPostAsync(one, "/v1/stores", new { code = store });
        await client.MustPostAsync(one, "/v1/tills", new { code = $"cl-k-till-{runId}", storeCode = store });
        var answer = await BillAsync(new { storeCode = store, tillCode = $"cl-k-till-{runId}", programId = program });
        if (answer.Status != 201) failures.Add($"a bill at a store and till just created through the other server answered {answer.Status}: {answer.Body}");
        var newProgram = (await client.MustPostAsync(one, "/v1/programs", new { name = $"Cluster k {runId}", earnRate = "1" })).GetProperty("programId").GetInt64();
        answer = await BillAsync(new { storeCode = store, programId = newProgram });
        if (answer.Status != 201) failures.Add($"a bill in a program just created through the other server answered {answer.Status}: {answer.Body}");

        // A currency added through server 1 earns on server 2's bills within the programs' expiry.
        await client.MustPostAsync(one, $"/v1/programs/{newProgram}/currencies", new { name = "ClusterStars", earnRate = "1" });
        var clock = Stopwatch.StartNew();
        var earnedAfter = (TimeSpan?)null;
        while (clock.Elapsed < CatalogCache.ProgramsTtl + TimeSpan.FromSeconds(5))
        {
            answer = await BillAsync(new { storeCode = store, programId = newProgram });
            if (answer.Status == 201 && answer.Body.Contains("\"ClusterStars\"", StringComparison.Ordinal)) { earnedAfter = clock.Elapsed; break; }
            await Task.Delay(50);
        }
        if (earnedAfter is null || earnedAfter > CatalogCache.ProgramsTtl + slack)
            failures.Add($"a currency added through the other server earned after {(earnedAfter is null ? "more than 6 s" : $"{earnedAfter.Value.TotalMilliseconds:0} ms")}, bound {CatalogCache.ProgramsTtl.TotalMilliseconds:0} ms");

        // A key revoked through server 1 is refused by server 2 within the keys' expiry.
        var issued = await client.MustPostAsync(one, "/v1/keys", new { role = "read", name = "cluster test" });
        var keyId = issued.GetProperty("keyId").GetString()!;
        using var reader = new ClusterClient(keyId, issued.GetProperty("secret").GetString()!);
        var path = $"/v1/customers/{member.CustomerId}/balances";
        var warm = await reader.GetAsync(two, path);
        if (warm.Status != 200) failures.Add($"a key just issued through the other server answered {warm.Status}");
        var revoked = await client.DeleteAsync(one, $"/v1/keys/{keyId}");
        if (revoked.Status != 204) failures.Add($"revoking the key answered {revoked.Status}: {revoked.Body}");
        clock.Restart();
        var refusedAfter = (TimeSpan?)null;
        while (clock.Elapsed < CatalogCache.KeysTtl + TimeSpan.FromSeconds(5))
        {
            if ((await reader.GetAsync(two, path)).Status == 401) { refusedAfter = clock.Elapsed; break; }
            await Task.Delay(50);
        }
        if (refusedAfter is null || refusedAfter > CatalogCache.KeysTtl + slack)
            failures.Add($"a key revoked through the other server was refused after {(refusedAfter is null ? "more than 6 s" : $"{refusedAfter.Value.TotalMilliseconds:0} ms")}, bound {CatalogCache.KeysTtl.TotalMilliseconds:0} ms");

        Console.WriteLine($"  store, till, program: used through the other server at once; currency earned there after " +
            $"{earnedAfter?.TotalMilliseconds:0} ms, revoked key refused there after {refusedAfter?.TotalMilliseconds:0} ms " +
            $"(bounds {CatalogCache.ProgramsTtl.TotalMilliseconds:0} and {CatalogCache.KeysTtl.TotalMilliseconds:0} ms)");
        foreach (var failure in failures) Console.WriteLine($"  FAIL: {failure}");
        Console.WriteLine(failures.Count == 0 ? $"cluster test ({name}): PASS" : $"cluster test ({name}): FAIL ({failures.Count} check(s))");
        return failures.Count == 0;
    }

    /// <summary>
    /// (d) The fault test's bank-style clients through HAProxy, one server SIGKILLed mid-run and not
    /// restarted: clients retrying with their Idempotency-Keys lose nothing and duplicate nothing
    /// (the fault test's audit against the database, and <c>verify</c>).
    /// </summary>
    private static async Task<bool> ServerKilledAsync(ClusterSettings settings, FaultSettings faultSettings, string storageArgs, string runId)
    {
        const string name = "server SIGKILLed mid-run";
        Console.WriteLine($"cluster test ({name}): {settings.Clients} retrying clients for {settings.KillRun.TotalSeconds:0} s, " +
            $"server 2 SIGKILLed at {settings.KillAt.TotalSeconds:0} s");
        // An organization of its own: the audit counts every event of the organization.
        var (orgId, keyId, secret) = await FaultRun.CreateOrganizationAsync(faultSettings, storageArgs, $"cluster-kill-{runId}");
        using var client = new RetryingClient([settings.Front], keyId, secret, faultSettings.AttemptTimeout);
        var shop = await FaultRun.SetUpShopAsync(client, orgId, 32, runId);
        var workload = new Workload(shop, client, runId);
        using var loadEnd = new CancellationTokenSource(settings.KillRun);
        using var giveUp = new CancellationTokenSource(settings.KillRun + faultSettings.SettleLimit);
        var clock = Stopwatch.StartNew();
        var load = workload.RunAsync(settings.Clients, loadEnd.Token, giveUp.Token);
        await Task.Delay(settings.KillAt);
        var killed = KillServer(Path.Combine(settings.StateDir, "server2.pid"));
        Console.WriteLine($"  {clock.Elapsed.TotalSeconds:0.0} s: {killed}");
        await load;
        Console.WriteLine($"  load ran {clock.Elapsed.TotalSeconds:0.0} s");
        return await FaultAudit.RunAsync(faultSettings, orgId, workload.Operations.ToList(), client, storageArgs, $"cluster test ({name})");
    }

    /// <summary>SIGKILL to the server whose pid the cluster's state dir records, if that pid is still a server.</summary>
    private static string KillServer(string pidFile)
    {
        var pid = int.Parse(File.ReadAllText(pidFile).Trim());
        var cmdline = File.Exists($"/proc/{pid}/cmdline") ? File.ReadAllText($"/proc/{pid}/cmdline") : "";
        if (!cmdline.Contains("LoyaltyLedger.dll", StringComparison.Ordinal)) throw new InvalidOperationException($"pid {pid} ({pidFile}) is no server");
        using var process = Process.GetProcessById(pid);
        process.Kill();
        process.WaitForExit(10_000);
        return $"server pid {pid} SIGKILLed";
    }

    private static async Task<(int ExitCode, string Output)> RunScriptAsync(string script, string arguments, TimeSpan limit)
    {
        var info = new ProcessStartInfo("bash") { ArgumentList = { script, arguments }, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"{script} did not start");
        using var timeout = new CancellationTokenSource(limit);
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var errors = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output + await errors);
    }
}
