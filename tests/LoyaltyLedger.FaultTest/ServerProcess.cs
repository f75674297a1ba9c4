using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LoyaltyLedger.FaultTest;

/// <summary>
/// One process of the built LoyaltyLedger executable serving on a loopback port. It is killed with
/// SIGKILL (no shutdown hooks, transactions cut mid-flight) and started again on the same port.
/// </summary>
public sealed class ServerProcess(string name, string serverDll, string storageArgs, int port, string logPath, string pidFile) : IDisposable
{
    private Process? _process;

    public string Name { get; } = name;
    public Uri BaseAddress { get; } = new($"http://127.0.0.1:{port}/");

    /// <summary>Starts the server and waits, at most <paramref name="limit"/>, for /health to answer.</summary>
    public async Task StartAsync(TimeSpan limit)
    {
        // sh's exec keeps the process id, so Kill reaches dotnet itself; output goes to a log file so
        // nobody has to drain the pipes of a process that is about to be killed.
        var info = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", $"exec dotnet '{serverDll}' serve {storageArgs} --urls {BaseAddress.ToString().TrimEnd('/')} >>'{logPath}' 2>&1" },
            UseShellExecute = false,
        };
        _process = Process.Start(info) ?? throw new InvalidOperationException($"{Name} did not start");
        await File.AppendAllTextAsync(pidFile, $"{_process.Id}\n");

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < limit)
        {
            if (_process.HasExited) throw new InvalidOperationException($"{Name} exited with {_process.ExitCode} at start; see {logPath}");
            try
            {
                using var response = await http.GetAsync(new Uri(BaseAddress, "health"));
                if (response.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException) { /* not listening yet */ }
            catch (TaskCanceledException) { /* starting slowly */ }
            await Task.Delay(100);
        }
        throw new TimeoutException($"{Name} did not answer /health within {limit.TotalSeconds:0} s; see {logPath}");
    }

    /// <summary>SIGKILL: the process gets no chance to finish, roll back or answer anything.</summary>
    public void Kill()
    {
        if (_process is null || _process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        Kill();
        _process?.Dispose();
    }

    /// <summary>A loopback port nothing listens on now; the server keeps it across its restarts.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
