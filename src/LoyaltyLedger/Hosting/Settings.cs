using System.Globalization;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// The server's settings, one type per concern, bound from configuration: appsettings.json in the
/// working directory, environment variables (<c>LEDGER_RATELIMIT__BURST</c> or the .NET form
/// <c>Ledger__RateLimit__Burst</c>) and the command line (<c>serve --set Ledger:RateLimit:Burst=50</c>),
/// the later winning. Each checks itself at start-up: a wrong value stops the server with one line
/// per problem. README's Configuration table lists every property of every settings type (a test
/// checks it).
/// </summary>
public interface ILedgerSettings
{
    /// <summary>Each problem as one line that names the setting and says what it takes.</summary>
    IEnumerable<string> Problems();
}

/// <summary><c>Ledger:RateLimit</c>: a token bucket per API key (and per client address without valid credentials).</summary>
public sealed class RateLimitSettings : ILedgerSettings
{
    public const string Section = "Ledger:RateLimit";

    /// <summary>Requests a key may make per second, on average.</summary>
    public int PermitsPerSecond { get; set; } = 500;

    /// <summary>Requests a key may make at once (default: the larger of 1,000 and PermitsPerSecond).</summary>
    public int? Burst { get; set; }

    public int EffectiveBurst => Burst ?? Math.Max(1000, PermitsPerSecond);

    public IEnumerable<string> Problems()
    {
        if (PermitsPerSecond < 1) yield return $"{Section}:PermitsPerSecond must be at least 1.";
        if (Burst is < 1) yield return $"{Section}:Burst must be at least 1.";
    }
}

/// <summary><c>Ledger:ExpiryInterval</c>: the background lifecycle run.</summary>
public sealed class LifecycleSettings : ILedgerSettings
{
    public const string Section = "Ledger";

    /// <summary>How often the lifecycle run (promised-points conversion, expiry notices, expiry) runs; 0 turns it off.</summary>
    public TimeSpan ExpiryInterval { get; set; } = TimeSpan.FromMinutes(5);

    public IEnumerable<string> Problems()
    {
        if (ExpiryInterval < TimeSpan.Zero) yield return $"{Section}:ExpiryInterval must be 0 (off) or more.";
    }
}

/// <summary><c>Ledger:Outbox</c>: the sequencer that numbers, in commit order, the announced events written without a position.</summary>
public sealed class OutboxSettings : ILedgerSettings
{
    public const string Section = "Ledger:Outbox";

    /// <summary>
    /// How often the sequencer looks for events committed without a position (by a server of an
    /// earlier version; this version's writes number their own at their commit); 0 turns it off, and
    /// then another process must run it while such servers write.
    /// </summary>
    public TimeSpan SequencerInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    public IEnumerable<string> Problems()
    {
        if (SequencerInterval < TimeSpan.Zero) yield return $"{Section}:SequencerInterval must be 0 (off) or more.";
    }
}

/// <summary><c>Ledger:Telemetry</c>: where traces go.</summary>
public sealed class TelemetrySettings : ILedgerSettings
{
    public const string Section = "Ledger:Telemetry";

    /// <summary>An OTLP endpoint (http or https URL) for traces; without it (and without OTEL_EXPORTER_OTLP_ENDPOINT) traces are not exported.</summary>
    public string? OtlpEndpoint { get; set; }

    public IEnumerable<string> Problems()
    {
        if (OtlpEndpoint is { Length: > 0 } url && !(Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"))
            yield return $"{Section}:OtlpEndpoint must be an http or https URL, not '{url}'.";
    }
}

/// <summary><c>Ledger:Server</c>: the process itself.</summary>
public sealed class ServerSettings : ILedgerSettings
{
    public const string Section = "Ledger:Server";

    /// <summary>How long a stopping server (SIGTERM) waits for the requests and deliveries in flight.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public IEnumerable<string> Problems()
    {
        if (ShutdownTimeout <= TimeSpan.Zero || ShutdownTimeout > TimeSpan.FromMinutes(10))
            yield return $"{Section}:ShutdownTimeout must be more than 0 and at most 00:10:00.";
    }
}

/// <summary>
/// <c>Ledger:ReadReplicas</c>: PostgreSQL streaming replicas that serve reads (README, "Read replicas
/// and read-your-writes"), and the bounds of how stale a read they serve may be.
/// </summary>
public sealed class ReadReplicaSettings : ILedgerSettings
{
    public const string Section = "Ledger";

    /// <summary>A connection string per replica (a list: <c>Ledger:ReadReplicas:0</c>, <c>:1</c>, ...; PostgreSQL only).</summary>
    public List<string> ReadReplicas { get; set; } = [];

    /// <summary>How long a read that sends a consistency token waits for a replica to replay it before the primary serves it.</summary>
    public TimeSpan ReplicaTokenWait { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The most a replica may lag behind the primary to serve a read without a token.</summary>
    public TimeSpan ReplicaMaxLag { get; set; } = TimeSpan.FromSeconds(1);

    public IEnumerable<string> Problems()
    {
        for (var i = 0; i < ReadReplicas.Count; i++)
        {
            // The connection string is not repeated: it may hold a password.
            string? problem = null;
            try
            {
                if (new Npgsql.NpgsqlConnectionStringBuilder(ReadReplicas[i]).Host is not { Length: > 0 })
                    problem = $"{Section}:ReadReplicas:{i} names no Host: give each replica as a PostgreSQL connection string (Host=...;Port=...;Username=...;Database=...).";
            }
            catch (ArgumentException)
            {
                problem = $"{Section}:ReadReplicas:{i} is not a PostgreSQL connection string (Host=...;Port=...;Username=...;Database=...).";
            }
            if (problem is not null) yield return problem;
        }
        if (ReplicaTokenWait < TimeSpan.Zero || ReplicaTokenWait > TimeSpan.FromSeconds(10))
            yield return $"{Section}:ReplicaTokenWait must be 0 (no wait) to 00:00:10.";
        if (ReplicaMaxLag <= TimeSpan.Zero || ReplicaMaxLag > TimeSpan.FromMinutes(1))
            yield return $"{Section}:ReplicaMaxLag must be more than 0 and at most 00:01:00.";
    }

    /// <summary>The problem of replicas on a database that has none: they are PostgreSQL's.</summary>
    public IEnumerable<string> ProblemsOn(LoyaltyLedger.Storage.DatabaseProvider provider)
    {
        if (provider == LoyaltyLedger.Storage.DatabaseProvider.Sqlite && ReadReplicas.Count > 0)
            yield return $"{Section}:ReadReplicas are PostgreSQL streaming replicas: they need the server on PostgreSQL (--postgres or LEDGER_POSTGRES), not SQLite.";
    }
}

/// <summary>
/// <c>Ledger:Postgres</c>: group commit of the API's writes and the lifecycle run's postings on PostgreSQL, and how
/// many reads run on its primary at once (docs/performance.md, "How a posting is written": group commit and
/// read slots on PostgreSQL). SQLite has one writer of its own and reads in the process, and takes none of these.
/// </summary>
public sealed class PostgresSettings : ILedgerSettings
{
    public const string Section = "Ledger:Postgres";

    /// <summary>Writers (each a connection) that gather the API's writes and the lifecycle run's postings into shared transactions; 0 writes each in a transaction of its own.</summary>
    public int WriteLanes { get; set; } = 2;

    /// <summary>The most writes one of those transactions takes: bounds the wait a write adds to the others.</summary>
    public int WriteBatch { get; set; } = 16;

    /// <summary>
    /// Whether the API's writes of one of those transactions first run side by side, their statements
    /// sent together round by round (false: always one after another, as the lifecycle's do).
    /// </summary>
    public bool WritesSideBySide { get; set; } = true;

    /// <summary>
    /// Reads that run on the primary at once; the others wait their turn, first come first served
    /// (0: each read takes a pooled connection as it comes). About twice the database server's cores;
    /// above the pool's size (`Maximum Pool Size`, 64 unless the connection string says) the pool bounds them.
    /// </summary>
    public int ReadSlots { get; set; } = 8;

    /// <summary>
    /// Connections of the read pipeline, which sends the page reads of both read APIs on the primary
    /// several to a round trip (0: each takes a read slot and a round trip of its own).
    /// </summary>
    public int ReadPipelineLanes { get; set; } = 2;

    /// <summary>The most page reads one round trip of the read pipeline sends.</summary>
    public int ReadPipelineBatch { get; set; } = 16;

    public IEnumerable<string> Problems()
    {
        if (WriteLanes is < 0 or > 32) yield return $"{Section}:WriteLanes must be 0 (each write alone) to 32.";
        if (WriteBatch is < 1 or > 64) yield return $"{Section}:WriteBatch must be 1 to 64.";
        if (ReadSlots is < 0 or > 256) yield return $"{Section}:ReadSlots must be 0 (no bound) to 256.";
        if (ReadPipelineLanes is < 0 or > 32) yield return $"{Section}:ReadPipelineLanes must be 0 (no pipeline) to 32.";
        if (ReadPipelineBatch is < 1 or > 256) yield return $"{Section}:ReadPipelineBatch must be 1 to 256.";
    }
}

public static class SettingsRegistration
{
    /// <summary>Every settings type, for the registration below and the README table test.</summary>
    public static readonly IReadOnlyList<(Type Type, string Section)> All =
    [
        (typeof(RateLimitSettings), RateLimitSettings.Section),
        (typeof(LifecycleSettings), LifecycleSettings.Section),
        (typeof(OutboxSettings), OutboxSettings.Section),
        (typeof(TelemetrySettings), TelemetrySettings.Section),
        (typeof(ServerSettings), ServerSettings.Section),
        (typeof(WebhookSettings), WebhookSettings.Section),
        (typeof(ReadReplicaSettings), ReadReplicaSettings.Section),
        (typeof(PostgresSettings), PostgresSettings.Section),
    ];

    /// <summary>
    /// <c>LEDGER_</c>-prefixed environment variables as settings of the <c>Ledger</c> section
    /// (<c>LEDGER_RATELIMIT__BURST</c> is <c>Ledger:RateLimit:Burst</c>), below the command line.
    /// </summary>
    /// <remarks>
    /// Placed before the last command-line source: the web builder adds the arguments twice, first
    /// as host settings (ahead of appsettings.json) and again last, and only the last one ranks
    /// above the settings file and the environment.
    /// </remarks>
    public static void AddLedgerEnvironment(this ConfigurationManager configuration)
    {
        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (System.Collections.DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            var name = (string)variable.Key;
            if (!name.StartsWith("LEDGER_", StringComparison.OrdinalIgnoreCase) || !name.Contains("__", StringComparison.Ordinal)) continue;
            values["Ledger:" + name["LEDGER_".Length..].Replace("__", ":", StringComparison.Ordinal)] = (string?)variable.Value;
        }
        if (values.Count == 0) return;
        var source = new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource { InitialData = values };
        var commandLine = configuration.Sources.ToList().FindLastIndex(s => s is CommandLineConfigurationSource);
        if (commandLine < 0) configuration.Sources.Add(source);
        else configuration.Sources.Insert(commandLine, source);
    }

    public static IServiceCollection AddLedgerSettings<T>(this IServiceCollection services, string section) where T : class, ILedgerSettings
    {
        services.AddOptions<T>().BindConfiguration(section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<T>, SettingsValidator<T>>();
        return services;
    }

    public static IServiceCollection AddLedgerSettings(this IServiceCollection services)
    {
        services.AddLedgerSettings<RateLimitSettings>(RateLimitSettings.Section)
            .AddLedgerSettings<LifecycleSettings>(LifecycleSettings.Section)
            .AddLedgerSettings<OutboxSettings>(OutboxSettings.Section)
            .AddLedgerSettings<TelemetrySettings>(TelemetrySettings.Section)
            .AddLedgerSettings<ServerSettings>(ServerSettings.Section)
            .AddLedgerSettings<ReadReplicaSettings>(ReadReplicaSettings.Section);
        services.AddOptions<HostOptions>().Configure<IOptions<ServerSettings>>((host, server) => host.ShutdownTimeout = server.Value.ShutdownTimeout);
        return services;
    }

    private sealed class SettingsValidator<T> : IValidateOptions<T> where T : class, ILedgerSettings
    {
        public ValidateOptionsResult Validate(string? name, T options) =>
            options.Problems().ToList() is { Count: > 0 } problems ? ValidateOptionsResult.Fail(problems) : ValidateOptionsResult.Success;
    }

    /// <summary>
    /// Reads every settings type from <paramref name="configuration"/> and collects every problem, so a
    /// server with wrong settings stops before it starts, saying all of them at once, one line each.
    /// With <paramref name="provider"/>, also the settings that the database cannot serve.
    /// </summary>
    public static IReadOnlyList<string> Check(IConfiguration configuration, LoyaltyLedger.Storage.DatabaseProvider? provider = null)
    {
        var problems = new List<string>();
        foreach (var (type, section) in All)
        {
            var settings = (ILedgerSettings)Activator.CreateInstance(type)!;
            foreach (var property in type.GetProperties().Where(p => p.CanWrite))
            {
                var key = $"{section}:{property.Name}";
                if (property.PropertyType == typeof(List<string>))
                {
                    // A list is its children (KEY:0, KEY:1, ...); a value on the key itself would be ignored.
                    if (configuration[key] is { Length: > 0 })
                        problems.Add($"{key} is a list: give each item as {key}:0, {key}:1, ... (environment: LEDGER_{key["Ledger:".Length..].Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant()}__0).");
                    var items = configuration.GetSection(key).GetChildren().Where(c => c.Value is not null).Select(c => c.Value!).ToList();
                    if (items.Count > 0) property.SetValue(settings, items);
                    continue;
                }
                if (configuration[key] is not { } text) continue;
                var target = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                if (TryRead(text, target, out var value)) property.SetValue(settings, value);
                else problems.Add($"{key} must be {Kind(target)}, not '{text}'.");
            }
            problems.AddRange(settings.Problems());
            if (provider is { } p && settings is ReadReplicaSettings replicas) problems.AddRange(replicas.ProblemsOn(p));
        }
        return problems;
    }

    private static bool TryRead(string text, Type type, out object? value)
    {
        value = null;
        if (type == typeof(string)) { value = text; return true; }
        if (type == typeof(bool) && bool.TryParse(text, out var b)) { value = b; return true; }
        if (type == typeof(int) && int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i)) { value = i; return true; }
        if (type == typeof(TimeSpan) && TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var t)) { value = t; return true; }
        return false;
    }

    private static string Kind(Type type) =>
        type == typeof(bool) ? "true or false"
        : type == typeof(int) ? "a whole number"
        : type == typeof(TimeSpan) ? "a duration (hh:mm:ss, e.g. 00:05:00)"
        : "text";
}

/// <summary>Settings that cannot be used; the server does not start.</summary>
public sealed class SettingsException(IReadOnlyList<string> problems)
    : Exception("The settings have problems: " + string.Join(" ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}
