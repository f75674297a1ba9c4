namespace LoyaltyLedger.FaultTest;

public enum StorageMode { Postgres, Sqlite }

/// <summary>
/// One run's settings: where the ledger lives, how long the load lasts, and when the faults strike
/// (seconds from the start of the load).
/// </summary>
public sealed class FaultSettings
{
    public StorageMode Mode { get; private set; }
    public string? Postgres { get; private set; }
    public string? DataDir { get; private set; }
    public string ServerDll { get; private set; } = "";
    public string WorkDir { get; private set; } = "";
    public string? PostgresScript { get; private set; }
    public string Profile { get; private set; } = "short";

    public int Clients { get; private set; } = 16;
    public int Customers { get; private set; }
    public TimeSpan LoadDuration { get; private set; }
    /// <summary>When a server is SIGKILLed; kills alternate between the servers.</summary>
    public IReadOnlyList<TimeSpan> ServerKills { get; private set; } = [];
    /// <summary>When PostgreSQL is restarted (PostgreSQL mode only).</summary>
    public IReadOnlyList<TimeSpan> PostgresRestarts { get; private set; } = [];
    /// <summary>How long a killed server stays down before it is started again.</summary>
    public TimeSpan DownTime { get; private set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long, after the load, operations still in flight may take to get a definitive answer.</summary>
    public TimeSpan SettleLimit { get; private set; } = TimeSpan.FromSeconds(60);
    /// <summary>Each HTTP attempt's limit: past it the client gives up on that attempt and retries.</summary>
    public TimeSpan AttemptTimeout { get; private set; } = TimeSpan.FromSeconds(10);

    public int ServerCount => Mode == StorageMode.Postgres ? 2 : 1;

    public static FaultSettings Parse(string[] args)
    {
        var s = new FaultSettings();
        string? mode = null;
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--mode": mode = Next(); break;
                case "--postgres": s.Postgres = Next(); break;
                case "--data-dir": s.DataDir = Next(); break;
                case "--server-dll": s.ServerDll = Next(); break;
                case "--work": s.WorkDir = Next(); break;
                case "--postgres-script": s.PostgresScript = Next(); break;
                case "--short": s.Profile = "short"; break;
                case "--long": s.Profile = "long"; break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }
        s.Mode = mode switch
        {
            "postgres" => StorageMode.Postgres,
            "sqlite" => StorageMode.Sqlite,
            _ => throw new ArgumentException("--mode is postgres or sqlite"),
        };
        if (s.Mode == StorageMode.Postgres && (s.Postgres is null || s.PostgresScript is null))
            throw new ArgumentException("postgres mode needs --postgres CONN and --postgres-script PATH");
        if (s.Mode == StorageMode.Sqlite && s.DataDir is null) throw new ArgumentException("sqlite mode needs --data-dir DIR");
        if (!File.Exists(s.ServerDll)) throw new ArgumentException($"--server-dll '{s.ServerDll}' not found (build the solution in Release first)");
        if (string.IsNullOrEmpty(s.WorkDir)) throw new ArgumentException("--work DIR is required");

        static TimeSpan Sec(double seconds) => TimeSpan.FromSeconds(seconds);
        var isLong = s.Profile == "long";
        // Few customers for many clients: wallets are contended, so the row locks, the balance checks
        // and the retries of commits whose answer was lost all meet on the same rows.
        s.Customers = isLong ? 64 : 32;
        if (s.Mode == StorageMode.Postgres)
        {
            s.LoadDuration = isLong ? Sec(300) : Sec(30);
            s.ServerKills = isLong ? [Sec(30), Sec(90), Sec(150), Sec(210), Sec(270)] : [Sec(8)];
            s.PostgresRestarts = isLong ? [Sec(60), Sec(180), Sec(240)] : [Sec(18)];
        }
        else
        {
            s.LoadDuration = isLong ? Sec(180) : Sec(20);
            s.ServerKills = isLong ? [Sec(20), Sec(60), Sec(100), Sec(140)] : [Sec(8)];
        }
        return s;
    }
}
