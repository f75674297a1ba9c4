namespace LoyaltyLedger.ClusterTest;

/// <summary>
/// One run's settings: the cluster scripts/cluster.sh started (its front, its servers, its primary,
/// its state dir) and how much load each scenario puts through it.
/// </summary>
public sealed class ClusterSettings
{
    public Uri Front { get; private set; } = null!;
    public IReadOnlyList<Uri> Servers { get; private set; } = [];
    public string Postgres { get; private set; } = "";
    public string ClusterScript { get; private set; } = "";
    public string StateDir { get; private set; } = "";
    public string ServerDll { get; private set; } = "";
    public string WorkDir { get; private set; } = "";

    /// <summary>Concurrent clients in every scenario.</summary>
    public int Clients { get; private set; } = 8;
    /// <summary>Write-read pairs (each write read back through both read APIs) with consistency tokens.</summary>
    public int TokenPairs { get; private set; } = 2000;
    /// <summary>Write-read pairs without tokens: how many reads would have been stale.</summary>
    public int PlainPairs { get; private set; } = 1000;
    /// <summary>Each pair run's time limit: past it the scenario fails for want of pairs.</summary>
    public TimeSpan PairLimit { get; private set; } = TimeSpan.FromSeconds(75);
    /// <summary>How long the replica-stop scenario runs, and when in it the replica is stopped.</summary>
    public TimeSpan ReplicaRun { get; private set; } = TimeSpan.FromSeconds(10);
    public TimeSpan ReplicaStopAt { get; private set; } = TimeSpan.FromSeconds(3);
    /// <summary>How long the SIGKILL scenario's load runs, and when in it a server is killed.</summary>
    public TimeSpan KillRun { get; private set; } = TimeSpan.FromSeconds(12);
    public TimeSpan KillAt { get; private set; } = TimeSpan.FromSeconds(4);

    public static ClusterSettings Parse(string[] args)
    {
        var s = new ClusterSettings();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Count() => int.TryParse(Next(), out var n) && n > 0 ? n : throw new ArgumentException($"{args[i - 1]} takes a positive whole number");
            switch (args[i])
            {
                case "--front": s.Front = new Uri(Next().TrimEnd('/') + "/"); break;
                case "--servers": s.Servers = Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(u => new Uri(u.TrimEnd('/') + "/")).ToList(); break;
                case "--postgres": s.Postgres = Next(); break;
                case "--cluster-script": s.ClusterScript = Next(); break;
                case "--state": s.StateDir = Next(); break;
                case "--server-dll": s.ServerDll = Next(); break;
                case "--work": s.WorkDir = Next(); break;
                case "--clients": s.Clients = Count(); break;
                case "--pairs": s.TokenPairs = Count(); break;
                case "--plain-pairs": s.PlainPairs = Count(); break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }
        if (s.Front is null) throw new ArgumentException("--front URL (HAProxy's) is required");
        if (s.Servers.Count < 2) throw new ArgumentException("--servers takes the two servers' URLs, comma-separated");
        if (s.Postgres.Length == 0 || s.ClusterScript.Length == 0 || s.StateDir.Length == 0)
            throw new ArgumentException("--postgres CONN, --cluster-script PATH and --state DIR are required");
        if (!File.Exists(s.ServerDll)) throw new ArgumentException($"--server-dll '{s.ServerDll}' not found (build the solution in Release first)");
        if (s.WorkDir.Length == 0) throw new ArgumentException("--work DIR is required");
        return s;
    }
}
