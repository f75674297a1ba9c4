using System.Diagnostics;
using LoyaltyLedger.Tests.Readme;
using Npgsql;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>
/// A real PostgreSQL streaming replica of the test server (LEDGER_TEST_POSTGRES), made with
/// <c>pg_basebackup -R</c> by <c>scripts/postgres.sh start-replica</c> on LEDGER_PG_REPLICA_PORT
/// (default: the test server's port + 10), in a directory of its own; stopped and removed at the end.
/// The test server must be one the script can replicate from as the postgres user over 127.0.0.1
/// (scripts/test.sh starts such a one).
/// </summary>
public sealed class StreamingReplica : IAsyncLifetime
{
    private readonly int _primaryPort = new NpgsqlConnectionStringBuilder(PostgresDatabase.ServerConnectionString).Port;

    public int Port => int.TryParse(Environment.GetEnvironmentVariable("LEDGER_PG_REPLICA_PORT"), out var port) ? port : _primaryPort + 10;

    /// <summary>The replica's connection string for the database <paramref name="primaryConnectionString"/> names.</summary>
    public string ConnectionStringFor(string primaryConnectionString) =>
        new NpgsqlConnectionStringBuilder(primaryConnectionString) { Port = Port }.ConnectionString;

    public async Task InitializeAsync() => await ScriptAsync("start-replica");

    public async Task DisposeAsync() => await ScriptAsync("stop-replica");

    /// <summary>Stops the replica server, keeping its data: a replica that is down.</summary>
    public Task HaltAsync() => ScriptAsync("halt-replica");

    /// <summary>Starts it again; it catches up from the primary.</summary>
    public Task ResumeAsync() => ScriptAsync("resume-replica");

    /// <summary>Stops replaying WAL (it keeps receiving it): a replica that falls behind.</summary>
    public Task PauseReplayAsync() => OnReplicaAsync("SELECT pg_wal_replay_pause()");

    public Task ResumeReplayAsync() => OnReplicaAsync("SELECT pg_wal_replay_resume()");

    /// <summary>Waits until the replica has replayed everything the primary has written so far.</summary>
    public async Task CatchUpAsync(TimeSpan? within = null)
    {
        string target;
        await using (var primary = new NpgsqlConnection(PostgresDatabase.ServerConnectionString))
        {
            await primary.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT pg_current_wal_lsn()::text", primary);
            target = (string)(await command.ExecuteScalarAsync())!;
        }
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var replica = new NpgsqlConnection(ConnectionStringFor(PostgresDatabase.ServerConnectionString));
                await replica.OpenAsync();
                await using var command = new NpgsqlCommand("SELECT pg_last_wal_replay_lsn() >= @target::pg_lsn", replica);
                command.Parameters.AddWithValue("target", target);
                if (await command.ExecuteScalarAsync() is true) return;
            }
            catch (NpgsqlException) when (deadline.Elapsed < (within ?? TimeSpan.FromSeconds(30)))
            {
                // Still starting.
            }
            if (deadline.Elapsed > (within ?? TimeSpan.FromSeconds(30)))
                throw new TimeoutException($"The replica on port {Port} did not reach the primary's {target}.");
            await Task.Delay(20);
        }
    }

    private async Task OnReplicaAsync(string sql)
    {
        await using var replica = new NpgsqlConnection(ConnectionStringFor(PostgresDatabase.ServerConnectionString));
        await replica.OpenAsync();
        await using var command = new NpgsqlCommand(sql, replica);
        await command.ExecuteNonQueryAsync();
    }

    private async Task ScriptAsync(string command)
    {
        var root = Path.GetDirectoryName(ReadmeExamples.FindReadme())!;
        var start = new ProcessStartInfo(Path.Combine(root, "scripts", "postgres.sh"), command)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = root,
        };
        start.Environment["LEDGER_PG_PORT"] = _primaryPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["LEDGER_PG_REPLICA_PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"scripts/postgres.sh {command} failed ({process.ExitCode}): {await errors}{await output}");
    }
}
