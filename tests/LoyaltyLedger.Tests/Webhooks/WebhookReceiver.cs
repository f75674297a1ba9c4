using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using StandardWebhooks;

namespace LoyaltyLedger.Tests.Webhooks;

/// <summary>One request a <see cref="WebhookReceiver"/> got.</summary>
public sealed record ReceivedWebhook(string Path, IHeaderDictionary Headers, string Body, int Answered)
{
    public string Id => Headers["webhook-id"].ToString();
    public string Type => JsonDocument.Parse(Body).RootElement.GetProperty("type").GetString()!;
    public long EventId => long.Parse(Id["evt_".Length..], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Checks the signature as a receiver would, with the StandardWebhooks package (it throws if it does not hold).</summary>
    public void Verify(string secret) => new StandardWebhook(secret).Verify(Body, Headers);

    /// <summary>The <c>v1,</c> signature of this request with <paramref name="secret"/>, computed by hand as the README's openssl snippet does.</summary>
    public string SignatureWith(string secret) => "v1," + Convert.ToBase64String(System.Security.Cryptography.HMACSHA256.HashData(
        Convert.FromBase64String(secret["whsec_".Length..]),
        System.Text.Encoding.UTF8.GetBytes($"{Id}.{Headers["webhook-timestamp"]}.{Body}")));
}

/// <summary>
/// A real HTTP receiver on 127.0.0.1 (Kestrel on a free port) that records every request and answers
/// what <see cref="Answer"/> says: by default 200. Each path is an endpoint of its own.
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedWebhook> _received = new();

    /// <summary>The status to answer a request with; may wait (a slow or hanging receiver).</summary>
    public Func<HttpRequest, string, Task<int>> Answer { get; set; } = (_, _) => Task.FromResult(200);

    private WebhookReceiver(WebApplication app)
    {
        _app = app;
        app.Run(async context =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync();
            var headers = new HeaderDictionary();
            foreach (var (name, value) in context.Request.Headers) headers[name] = value;
            int status;
            try
            {
                status = await Answer(context.Request, body);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            _received.Enqueue(new ReceivedWebhook(context.Request.Path, headers, body, status));
            context.Response.StatusCode = status;
        });
    }

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var receiver = new WebhookReceiver(builder.Build());
        await receiver._app.StartAsync();
        return receiver;
    }

    public string Url(string path = "/hook") => _app.Urls.Single().TrimEnd('/') + path;

    public IReadOnlyList<ReceivedWebhook> Received => _received.ToList();

    public IReadOnlyList<ReceivedWebhook> At(string path) => _received.Where(r => r.Path == path).ToList();

    /// <summary>Waits (at most <paramref name="limit"/>, default 20 s) until the received requests satisfy <paramref name="done"/>.</summary>
    public async Task<IReadOnlyList<ReceivedWebhook>> WaitForAsync(Func<IReadOnlyList<ReceivedWebhook>, bool> done, TimeSpan? limit = null, string? what = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var received = Received;
            if (done(received)) return received;
            if (clock.Elapsed > (limit ?? TimeSpan.FromSeconds(20)))
                throw new Xunit.Sdk.XunitException($"Timed out waiting for {what ?? "deliveries"}; received {received.Count}: " +
                    string.Join(", ", received.TakeLast(10).Select(r => $"{r.Path} {r.Id} -> {r.Answered}")));
            await Task.Delay(25);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
