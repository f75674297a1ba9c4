using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LoyaltyLedger.Tests.Webhooks;

/// <summary>
/// The LoyaltyLedger executable (from this test's output folder) serving on a loopback port as a
/// process of its own, so a test can SIGKILL it: no shutdown, no lease given back, a delivery cut
/// mid-flight. Settings go in as environment variables.
/// </summary>
public sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly string _log;

    private ServerProcess(Process process, Uri baseAddress, string log)
    {
        _process = process;
        BaseAddress = baseAddress;
        _log = log;
    }

    public Uri BaseAddress { get; }

    public static async Task<ServerProcess> StartAsync(string[] storageArgs, IDictionary<string, string?> settings, TimeSpan? limit = null)
    {
        var port = FreePort();
        var baseAddress = new Uri($"http://127.0.0.1:{port}/");
        var dll = typeof(LoyaltyLedger.Server.Hosting.LedgerServer).Assembly.Location;
        var log = Path.Combine(Path.GetTempPath(), $"loyaltyledger-webhook-server-{port}.log");
        var info = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        foreach (var a in new[] { dll, "serve" }.Concat(storageArgs).Concat(["--urls", baseAddress.ToString().TrimEnd('/')])) info.ArgumentList.Add(a);
        foreach (var (key, value) in settings) info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        var process = Process.Start(info) ?? throw new InvalidOperationException("The server did not start.");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ServerProcess(process, baseAddress, log);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < (limit ?? TimeSpan.FromSeconds(60)))
        {
            if (process.HasExited) throw new InvalidOperationException($"The server exited with {process.ExitCode} at start: {server.Log()}");
            try
            {
                using var response = await http.GetAsync(new Uri(baseAddress, "health"));
                if (response.StatusCode == HttpStatusCode.OK) return server;
            }
            catch (HttpRequestException) { /* not listening yet */ }
            catch (TaskCanceledException) { /* starting slowly */ }
            await Task.Delay(100);
        }
        server.Dispose();
        throw new TimeoutException($"The server did not answer /health in time: {server.Log()}");
    }

    /// <summary>SIGKILL: the process gets no chance to finish anything.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public string Log()
    {
        try { return File.ReadAllText(_log); }
        catch (IOException) { return "(no log)"; }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
