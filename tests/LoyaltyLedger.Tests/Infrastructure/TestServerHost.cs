using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>A clock that tests move by hand; a <paramref name="ticking"/> one also moves with real time.</summary>
public sealed class TestClock(DateTimeOffset start, bool ticking = false) : TimeProvider
{
    private readonly long _origin = global::System.Diagnostics.Stopwatch.GetTimestamp();
    private DateTimeOffset _now = start;
    public override DateTimeOffset GetUtcNow() => ticking ? _now + global::System.Diagnostics.Stopwatch.GetElapsedTime(_origin) : _now;
    public void Advance(TimeSpan by) => _now += by;
    public void Set(DateTimeOffset at) => _now = at;
}

/// <summary>The real HTTP pipeline on the in-memory test server, over one test database.</summary>
public sealed class TestServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestServerHost(WebApplication app, LedgerDatabase database, TestClock clock)
    {
        _app = app;
        Database = database;
        Clock = clock;
    }

    public LedgerDatabase Database { get; }
    public TestClock Clock { get; }

    /// <summary>The server's services (its route table, for tests that cover every endpoint).</summary>
    public IServiceProvider Services => _app.Services;

    public static async Task<TestServerHost> StartAsync(LedgerDatabase database, IDictionary<string, string?>? settings = null,
        ILoggerProvider? logs = null, TestClock? clock = null)
    {
        clock ??= new TestClock(new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero));
        var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = database,
            Clock = clock,
            Configure = builder =>
            {
                builder.WebHost.UseTestServer();
                // The in-memory server outruns the production default limit; tests of the limit set their own.
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
                {
                    ["Ledger:RateLimit:PermitsPerSecond"] = "1000000",
                    ["Ledger:RateLimit:Burst"] = "1000000",
                    // No webhook is sent from a test server unless its test asks for it (and then only to 127.0.0.1).
                    ["Ledger:Webhooks:Dispatch"] = "false",
                    // A write numbers its outbox rows at its commit; a test that writes rows without a position
                    // runs the sequencer itself, so that no background run can number them behind its back.
                    ["Ledger:Outbox:SequencerInterval"] = "00:00:00",
                });
                if (settings is not null) builder.Configuration.AddInMemoryCollection(settings);
                if (logs is not null) builder.Logging.AddProvider(logs);
            },
        });
        await app.StartAsync();
        return new TestServerHost(app, database, clock);
    }

    /// <summary>A new organization with a key of the given role, and a client that uses it.</summary>
    public async Task<Tenant> NewTenantAsync(KeyRole role = KeyRole.Admin)
    {
        var org = await Tenants.CreateOrganizationAsync(Database, "test org " + Guid.NewGuid().ToString("N")[..8], Clock, CancellationToken.None);
        var key = await Tenants.IssueKeyAsync(Database, org.OrgId, role, Clock, CancellationToken.None);
        return new Tenant(org.OrgId, key, Client(key.KeyId, key.Secret), this);
    }

    public HttpClient Client(string? keyId = null, string? secret = null)
    {
        var client = _app.GetTestClient();
        if (keyId is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes($"{keyId}:{secret}")));
        }
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        await Database.DisposeAsync();
    }
}

/// <summary>An organization under test with an authenticated client.</summary>
public sealed record Tenant(long OrgId, IssuedKey Key, HttpClient Http, TestServerHost Host)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<HttpResponseMessage> PostAsync(string path, object body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body, options: Json) };
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        return await Http.SendAsync(request);
    }

    public async Task<HttpResponseMessage> PostRawAsync(string path, string body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        return await Http.SendAsync(request);
    }

    /// <summary>Posts and asserts success, returning the JSON body.</summary>
    public async Task<JsonElement> PostOkAsync(string path, object body, string? idempotencyKey = null)
    {
        using var response = await PostAsync(path, body, idempotencyKey);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
            throw new Xunit.Sdk.XunitException($"POST {path} answered {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Puts and asserts success, returning the JSON body.</summary>
    public async Task<JsonElement> PutOkAsync(string path, object body)
    {
        using var response = await Http.PutAsync(path, JsonContent.Create(body, options: Json));
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
            throw new Xunit.Sdk.XunitException($"PUT {path} answered {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public async Task<JsonElement> GetOkAsync(string path)
    {
        using var response = await Http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
            throw new Xunit.Sdk.XunitException($"GET {path} answered {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Reads an error response, asserting its status and stable code.</summary>
    public static async Task<JsonElement> ShouldFailAsync(HttpResponseMessage response, int status, string code)
    {
        var text = await response.Content.ReadAsStringAsync();
        ((int)response.StatusCode).ShouldBe(status, text);
        var body = JsonDocument.Parse(text).RootElement.Clone();
        body.GetProperty("code").GetString().ShouldBe(code, text);
        return body;
    }
}
