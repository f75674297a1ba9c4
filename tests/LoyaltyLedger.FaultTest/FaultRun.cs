using System.Diagnostics;
using System.Text.RegularExpressions;

namespace LoyaltyLedger.FaultTest;

/// <summary>
/// The run: an organization and its shop, the servers, the load with its faults, then the audit.
/// Exits 0 only when every check passes.
/// </summary>
public static partial class FaultRun
{
    public static async Task<int> MainAsync(string[] args)
    {
        FaultSettings settings;
        try
        {
            settings = FaultSettings.Parse(args);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return 2;
        }
        Directory.CreateDirectory(settings.WorkDir);
        var servers = new List<ServerProcess>();
        // The script's trap kills what this file lists, should this process itself be killed.
        var pidFile = Path.Combine(settings.WorkDir, "server.pids");
        try
        {
            return await RunAsync(settings, servers, pidFile);
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or HttpRequestException or IOException)
        {
            // A fault the run could not ride out (a server that does not come back, a failed set-up
            // call): a failed test with its reason, not a crash dump.
            await Console.Error.WriteLineAsync($"fault test ({settings.Mode.ToString().ToLowerInvariant()}): FAIL: {ex.Message}");
            return 1;
        }
        finally
        {
            foreach (var server in servers) server.Dispose();
        }
    }

    private static async Task<int> RunAsync(FaultSettings settings, List<ServerProcess> servers, string pidFile)
    {
        var mode = settings.Mode == StorageMode.Postgres ? "postgres" : "sqlite";
        var storageArgs = settings.Mode == StorageMode.Postgres ? $"--postgres '{settings.Postgres}'" : $"--data-dir '{settings.DataDir}'";
        var runId = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString();
        Console.WriteLine($"fault test ({mode}, {settings.Profile}): {settings.Clients} clients, {settings.ServerCount} server(s), " +
            $"{settings.Customers} customers, load {settings.LoadDuration.TotalSeconds:0} s");

        var (orgId, keyId, secret) = await CreateOrganizationAsync(settings, storageArgs, $"fault-test-{runId}");
        for (var i = 0; i < settings.ServerCount; i++)
        {
            var server = new ServerProcess($"server {i + 1}", settings.ServerDll, storageArgs, ServerProcess.FreePort(),
                Path.Combine(settings.WorkDir, $"server{i + 1}.log"), pidFile);
            servers.Add(server);
            await server.StartAsync(TimeSpan.FromSeconds(60));
        }
        using var client = new RetryingClient(servers.Select(s => s.BaseAddress).ToList(), keyId, secret, settings.AttemptTimeout);
        var shop = await SetUpShopAsync(client, orgId, settings.Customers, runId);

        var workload = new Workload(shop, client, runId);
        using var loadEnd = new CancellationTokenSource(settings.LoadDuration);
        using var giveUp = new CancellationTokenSource(settings.LoadDuration + settings.SettleLimit);
        var clock = Stopwatch.StartNew();
        var load = workload.RunAsync(settings.Clients, loadEnd.Token, giveUp.Token);
        var faults = await InjectFaultsAsync(settings, servers, clock, loadEnd.Token);
        await load;
        var loadSeconds = clock.Elapsed.TotalSeconds;
        foreach (var server in servers) server.Kill();

        Console.WriteLine($"  load ran {loadSeconds:0.0} s; faults:");
        foreach (var fault in faults) Console.WriteLine($"    {fault}");
        var audit = await FaultAudit.RunAsync(settings, orgId, workload.Operations.ToList(), client, storageArgs);
        return audit ? 0 : 1;
    }

    /// <summary>An organization and its admin key, made with the executable's <c>org create</c>.</summary>
    public static async Task<(long OrgId, string KeyId, string Secret)> CreateOrganizationAsync(FaultSettings settings, string storageArgs, string name)
    {
        var (exitCode, output) = await RunServerCommandAsync(settings, $"org create --name '{name}' {storageArgs}", TimeSpan.FromSeconds(60));
        var org = OrgLine().Match(output);
        var key = KeyLine().Match(output);
        var secret = SecretLine().Match(output);
        if (exitCode != 0 || !org.Success || !key.Success || !secret.Success)
            throw new InvalidOperationException($"org create failed ({exitCode}): {output}");
        return (long.Parse(org.Groups[1].Value), key.Groups[1].Value, secret.Groups[1].Value);
    }

    /// <summary>Runs the executable with a command line (not a server), bounded in time.</summary>
    public static async Task<(int ExitCode, string Output)> RunServerCommandAsync(FaultSettings settings, string arguments, TimeSpan limit)
    {
        var info = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", $"exec dotnet '{settings.ServerDll}' {arguments} 2>&1" },
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        return await RunAsync(info, limit);
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(ProcessStartInfo info, TimeSpan limit)
    {
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"{info.FileName} did not start");
        using var timeout = new CancellationTokenSource(limit);
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await output);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{string.Join(' ', info.ArgumentList)} took more than {limit.TotalSeconds:0} s");
        }
    }

    /// <summary>The program (earn rate 1), store, till and customers the workload runs against.</summary>
    public static async Task<Shop> SetUpShopAsync(RetryingClient client, long orgId, int customers, string runId)
    {
        var ct = CancellationToken.None;
        var program = await client.PostAsync("/v1/programs", new { name = "Fault test", earnRate = "1" }, ct);
        var storeCode = $"ft-store-{runId}";
        var tillCode = $"ft-till-{runId}";
        await client.PostAsync("/v1/stores", new { code = storeCode }, ct);
        await client.PostAsync("/v1/tills", new { code = tillCode, storeCode }, ct);
        var ids = new List<long>();
        for (var i = 0; i < customers; i++)
        {
            var customer = await client.PostAsync("/v1/customers", new { firstName = "Fault", lastName = $"Tester {i}" }, ct);
            ids.Add(customer.GetProperty("customerId").GetInt64());
        }
        return new Shop(orgId, program.GetProperty("programId").GetInt64(), storeCode, tillCode, ids);
    }

    /// <summary>Kills and restarts servers, and restarts PostgreSQL, on the settings' schedule.</summary>
    private static async Task<List<string>> InjectFaultsAsync(FaultSettings settings, List<ServerProcess> servers, Stopwatch clock, CancellationToken loadEnd)
    {
        var schedule = settings.ServerKills.Select(t => (At: t, Postgres: false))
            .Concat(settings.Mode == StorageMode.Postgres ? settings.PostgresRestarts.Select(t => (At: t, Postgres: true)) : [])
            .OrderBy(f => f.At).ToList();
        var log = new List<string>();
        var kills = 0;
        foreach (var (at, postgres) in schedule)
        {
            var wait = at - clock.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                try { await Task.Delay(wait, loadEnd); }
                catch (OperationCanceledException) { break; }
            }
            var started = clock.Elapsed;
            if (postgres)
            {
                var info = new ProcessStartInfo("bash") { ArgumentList = { settings.PostgresScript!, "restart" }, RedirectStandardOutput = true, UseShellExecute = false };
                var (exitCode, output) = await RunAsync(info, TimeSpan.FromSeconds(90));
                if (exitCode != 0) throw new InvalidOperationException($"PostgreSQL restart failed ({exitCode}): {output}");
                log.Add($"{started.TotalSeconds,6:0.0} s  PostgreSQL restarted (pg_ctl restart -m fast), back after {(clock.Elapsed - started).TotalSeconds:0.0} s");
            }
            else
            {
                var server = servers[kills++ % servers.Count];
                server.Kill();
                await Task.Delay(settings.DownTime, CancellationToken.None);
                await server.StartAsync(TimeSpan.FromSeconds(60));
                log.Add($"{started.TotalSeconds,6:0.0} s  {server.Name} SIGKILLed under load, serving again after {(clock.Elapsed - started).TotalSeconds:0.0} s");
            }
        }
        return log;
    }

    [GeneratedRegex(@"organization (\d+) ")]
    private static partial Regex OrgLine();

    [GeneratedRegex(@"admin key: (\S+)")]
    private static partial Regex KeyLine();

    [GeneratedRegex(@"secret:\s+(\S+)")]
    private static partial Regex SecretLine();
}
