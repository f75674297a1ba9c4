using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace LoyaltyLedger.FaultTest;

/// <summary>
/// A client as a bank would write it: one Idempotency-Key per operation, and on a connection error,
/// a timeout or a 5xx the same request again under the same key (to another server when there is
/// one), until a definitive answer: a 2xx, or a 4xx refusal.
/// </summary>
public sealed class RetryingClient : IDisposable
{
    /// <summary>Refusals a correct ledger gives under this load; any other 4xx is an anomaly.</summary>
    private static readonly HashSet<string> ExpectedRefusals = ["insufficient_balance", "return_exceeds_bill"];

    private readonly HttpClient _http;
    private readonly IReadOnlyList<Uri> _servers;
    private readonly TimeSpan _attemptTimeout;
    private long _connectionErrors;
    private long _timeouts;
    private long _serverErrors;

    public RetryingClient(IReadOnlyList<Uri> servers, string keyId, string secret, TimeSpan attemptTimeout)
    {
        _servers = servers;
        _attemptTimeout = attemptTimeout;
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(2),
            // Short-lived pooled connections, so clients find a restarted server soon.
            PooledConnectionLifetime = TimeSpan.FromSeconds(5),
            MaxConnectionsPerServer = 64,
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{keyId}:{secret}")));
    }

    public long ConnectionErrors => Interlocked.Read(ref _connectionErrors);
    public long Timeouts => Interlocked.Read(ref _timeouts);
    public long ServerErrors => Interlocked.Read(ref _serverErrors);

    /// <summary>
    /// Sends <paramref name="op"/> until it is answered definitively, or marks it unresolved when
    /// <paramref name="giveUp"/> fires first. <paramref name="spread"/> picks the first server.
    /// </summary>
    public async Task RunAsync(Operation op, int spread, CancellationToken giveUp)
    {
        for (var attempt = 0; ; attempt++)
        {
            if (giveUp.IsCancellationRequested)
            {
                op.Outcome = Outcome.Unresolved;
                return;
            }
            var server = _servers[(spread + attempt) % _servers.Count];
            op.Attempts++;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(giveUp);
            timeout.CancelAfter(_attemptTimeout);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, op.Path.TrimStart('/')))
                {
                    Content = new StringContent(op.Body, Encoding.UTF8, "application/json"),
                };
                request.Headers.Add("Idempotency-Key", op.Key);
                using var response = await _http.SendAsync(request, timeout.Token);
                var body = await response.Content.ReadAsStringAsync(timeout.Token);
                var status = (int)response.StatusCode;
                if (status is >= 200 and < 300)
                {
                    op.Acknowledge(status, body, response.Headers.TryGetValues("Idempotent-Replayed", out var replay) && replay.Contains("true"));
                    return;
                }
                if (status is >= 400 and < 500 && status is not 408 and not 429)
                {
                    op.Status = status;
                    op.ResponseBody = body;
                    op.ErrorCode = ErrorCode(body);
                    op.Outcome = status == 422 && op.ErrorCode is not null && ExpectedRefusals.Contains(op.ErrorCode) ? Outcome.Refused : Outcome.Anomaly;
                    return;
                }
                Interlocked.Increment(ref _serverErrors);
            }
            catch (HttpRequestException)
            {
                // Refused, reset or cut mid-answer: the write may or may not have committed.
                Interlocked.Increment(ref _connectionErrors);
            }
            catch (OperationCanceledException) when (!giveUp.IsCancellationRequested)
            {
                Interlocked.Increment(ref _timeouts);
            }
            catch (OperationCanceledException)
            {
                op.Outcome = Outcome.Unresolved;
                return;
            }

            // Exponential backoff with jitter, capped: a restart takes a second or two.
            var delay = Math.Min(1000, 25 << Math.Min(attempt, 6)) + Random.Shared.Next(0, 50);
            try { await Task.Delay(delay, giveUp); }
            catch (OperationCanceledException) { /* the loop marks it unresolved */ }
        }
    }

    /// <summary>A plain POST for set-up data; set-up runs before any fault, so one attempt per server is enough.</summary>
    public async Task<JsonElement> PostAsync(string path, object body, CancellationToken ct)
    {
        using var content = new StringContent(JsonSerializer.Serialize(body, JsonSerializerOptions.Web), Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri(_servers[0], path.TrimStart('/')), content, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"set-up POST {path} answered {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        return json.RootElement.Clone();
    }

    private static string? ErrorCode(string body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            return json.RootElement.TryGetProperty("code", out var code) ? code.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public void Dispose() => _http.Dispose();
}
