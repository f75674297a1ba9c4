using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;

// A small HTTP load generator for bench/webhooks.sh and bench/replicas.sh (bench/run.sh uses wrk):
// concurrent clients against one LoyaltyLedger server on 127.0.0.1. Every loop is bounded by a
// duration and a request count.
//   write --url U --key K --secret S --clients N --seconds T --customers FIRST-LAST --store CODE
//       bills and redemptions (balance-checked by the server, each with its own Idempotency-Key)
//   read --url U --key K --secret S --clients N --requests R --path PATH [--seconds T]
//       GETs of one path; prints p50 and p99 latency
// Output: one line of key=value pairs, for the script to pick up.
var options = Options.Parse(args);
using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
{
    BaseAddress = new Uri(options.Get("url")),
    Timeout = TimeSpan.FromSeconds(30),
};
http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
    Convert.ToBase64String(Encoding.UTF8.GetBytes($"{options.Get("key")}:{options.Get("secret")}")));
var clients = int.Parse(options.Get("clients"), CultureInfo.InvariantCulture);

return options.Command switch
{
    "write" => await WriteAsync(),
    "read" => await ReadAsync(),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: LoyaltyLedger.Load write|read --url URL --key ID --secret S --clients N ...");
    return 2;
}

async Task<int> WriteAsync()
{
    var seconds = double.Parse(options.Get("seconds"), CultureInfo.InvariantCulture);
    var range = options.Get("customers").Split('-');
    var (first, last) = (long.Parse(range[0], CultureInfo.InvariantCulture), long.Parse(range[1], CultureInfo.InvariantCulture));
    var store = options.Get("store");
    var run = Guid.NewGuid().ToString("N")[..8];
    var maxRequests = 2_000_000L;
    var issued = 0L;
    var latencies = new List<double>[clients];
    var (ok, refused, failed) = (0L, 0L, 0L);
    var deadline = Stopwatch.StartNew();
    var workers = Enumerable.Range(0, clients).Select(async worker =>
    {
        var random = new Random(worker * 7919 + 1);
        var mine = latencies[worker] = [];
        while (deadline.Elapsed.TotalSeconds < seconds && Interlocked.Increment(ref issued) <= maxRequests)
        {
            var customer = first + random.NextInt64(last - first + 1);
            var n = Interlocked.Read(ref issued);
            // Two bills for each redemption: the balance keeps growing, so most redemptions pass the
            // server's balance check and the rest are refused with 422, as at a real till.
            var isBill = random.Next(3) != 0;
            var (path, body) = isBill
                ? ("/v1/transactions", $$"""{"customerId":{{customer}},"billNumber":"{{run}}-{{worker}}-{{n}}","amount":{{random.Next(5, 300)}}.50,"storeCode":"{{store}}"}""")
                : ("/v1/redemptions", $$"""{"customerId":{{customer}},"points":"{{random.Next(1, 20)}}"}""");
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            request.Headers.Add("Idempotency-Key", $"{run}-{worker}-{n}");
            var started = Stopwatch.GetTimestamp();
            try
            {
                using var response = await http.SendAsync(request);
                mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                if (response.IsSuccessStatusCode) Interlocked.Increment(ref ok);
                else if ((int)response.StatusCode == 422) Interlocked.Increment(ref refused);
                else
                {
                    Interlocked.Increment(ref failed);
                    if (Interlocked.Read(ref failed) <= 3) Console.Error.WriteLine($"{path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
            }
            catch (HttpRequestException ex)
            {
                Interlocked.Increment(ref failed);
                if (Interlocked.Read(ref failed) <= 3) Console.Error.WriteLine($"{path}: {ex.Message}");
            }
        }
    }).ToArray();
    await Task.WhenAll(workers);
    var elapsed = deadline.Elapsed.TotalSeconds;
    var all = latencies.SelectMany(l => l).Order().ToArray();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"clients={clients} seconds={elapsed:F1} committed={ok} refused={refused} failed={failed} tps={(ok + refused) / elapsed:F1} committed_tps={ok / elapsed:F1} p50_ms={Percentile(all, 0.50):F1} p99_ms={Percentile(all, 0.99):F1}"));
    return failed == 0 ? 0 : 1;
}

async Task<int> ReadAsync()
{
    var requests = int.Parse(options.Get("requests"), CultureInfo.InvariantCulture);
    var path = options.Get("path");
    // --seconds bounds the run by time as well (whichever comes first); five minutes at most.
    var limit = options.Find("seconds") is { } seconds ? TimeSpan.FromSeconds(double.Parse(seconds, CultureInfo.InvariantCulture)) : TimeSpan.FromMinutes(5);
    // Warm-up, not measured: every client's connection opened (the requests go at once, so the
    // pool opens one connection each; one after another they would all share one, and 31 clients
    // would connect inside the measurement), this process's JIT past its first compilations, and
    // the database's cache.
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
    {
        for (var i = 0; i < 4; i++) (await http.GetAsync(path)).Dispose();
    }));
    var next = 0;
    var failed = 0;
    var latencies = new List<double>[clients];
    var clock = Stopwatch.StartNew();
    var workers = Enumerable.Range(0, clients).Select(async worker =>
    {
        var mine = latencies[worker] = [];
        while (Interlocked.Increment(ref next) <= requests && clock.Elapsed < limit)
        {
            var started = Stopwatch.GetTimestamp();
            using var response = await http.GetAsync(path);
            await response.Content.ReadAsByteArrayAsync();
            mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (!response.IsSuccessStatusCode && Interlocked.Increment(ref failed) <= 3)
                Console.Error.WriteLine($"{path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }).ToArray();
    await Task.WhenAll(workers);
    var all = latencies.SelectMany(l => l).Order().ToArray();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"clients={clients} requests={all.Length} failed={failed} rps={all.Length / clock.Elapsed.TotalSeconds:F1} p50_ms={Percentile(all, 0.50):F1} p99_ms={Percentile(all, 0.99):F1}"));
    return failed == 0 ? 0 : 1;
}

static double Percentile(double[] sorted, double q) =>
    sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

/// <summary>The command, then --name value pairs.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public string Command { get; private init; } = "";

    public string Get(string name) =>
        _values.TryGetValue(name, out var value) ? value : throw new ArgumentException($"--{name} is required");

    public string? Find(string name) => _values.GetValueOrDefault(name);

    public static Options Parse(string[] args)
    {
        var options = new Options { Command = args.FirstOrDefault() ?? "" };
        for (var i = 1; i + 1 < args.Length; i += 2)
            options._values[args[i].TrimStart('-')] = args[i + 1];
        return options;
    }
}
