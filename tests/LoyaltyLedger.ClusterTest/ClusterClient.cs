using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace LoyaltyLedger.ClusterTest;

/// <summary>One HTTP client with one key, for any of the cluster's addresses (HAProxy's front or a server).</summary>
public sealed class ClusterClient : IDisposable
{
    public const string TokenHeader = "Ledger-Consistency-Token";

    private readonly HttpClient _http;

    public ClusterClient(string keyId, string secret)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(2),
            PooledConnectionLifetime = TimeSpan.FromSeconds(5),
            MaxConnectionsPerServer = 64,
        };
        _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{keyId}:{secret}")));
    }

    /// <summary>A request's status, body and consistency token (null when the answer has none).</summary>
    public sealed record Answer(int Status, string Body, string? Token)
    {
        public JsonElement Json()
        {
            using var json = JsonDocument.Parse(Body);
            return json.RootElement.Clone();
        }
    }

    public Task<Answer> PostAsync(Uri baseAddress, string path, object body, string? idempotencyKey = null, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, baseAddress, path, JsonSerializer.Serialize(body, JsonSerializerOptions.Web), idempotencyKey, null, ct);

    public Task<Answer> GetAsync(Uri baseAddress, string path, string? token = null, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Get, baseAddress, path, null, null, token, ct);

    public Task<Answer> DeleteAsync(Uri baseAddress, string path, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Delete, baseAddress, path, null, null, null, ct);

    /// <summary>A set-up call that must succeed: anything but a 2xx is the run's failure.</summary>
    public async Task<JsonElement> MustPostAsync(Uri baseAddress, string path, object body)
    {
        var answer = await PostAsync(baseAddress, path, body);
        if (answer.Status is < 200 or >= 300) throw new InvalidOperationException($"set-up POST {path} answered {answer.Status}: {answer.Body}");
        return answer.Json();
    }

    private async Task<Answer> SendAsync(HttpMethod method, Uri baseAddress, string path, string? json, string? idempotencyKey, string? token, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, new Uri(baseAddress, path.TrimStart('/')));
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        if (token is not null) request.Headers.Add(TokenHeader, token);
        using var response = await _http.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        var answerToken = response.Headers.TryGetValues(TokenHeader, out var values) ? values.FirstOrDefault() : null;
        return new Answer((int)response.StatusCode, body, answerToken);
    }

    public void Dispose() => _http.Dispose();
}
