using LoyaltyLedger.Telemetry;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Webhooks;
using Microsoft.Extensions.Options;
using StandardWebhooks;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Delivers the outbox to webhook endpoints, in the background, decoupled from the write path: a
/// posting only writes its outbox rows, so a slow or dead receiver never slows one down.
/// </summary>
/// <remarks>
/// Each pass fans new outbox events out into the endpoints' queues (<see cref="WebhookQueue.FanOutAsync"/>),
/// then leases up to <c>MaxConcurrency</c> endpoints whose next delivery is due and sends each one's
/// queue in order, front to back, stopping at a delivery that failed and must wait for its retry
/// (head-of-line: per endpoint, events arrive in commit order). Every attempt is logged. A delivery
/// that has failed on every try of the retry schedule has failed; an endpoint with
/// <c>DisableAfterFailedDeliveries</c> such deliveries in a row is disabled, with the reason.
/// Several servers may dispatch from one PostgreSQL database: an endpoint is leased to one of them at
/// a time (see <see cref="WebhookQueue"/>).
/// </remarks>
public sealed class WebhookDispatcher(
    LedgerDatabase database,
    TimeProvider clock,
    IHttpClientFactory httpClients,
    IOptions<WebhookSettings> options,
    WebhookSecrets secrets,
    ILogger<WebhookDispatcher> logger) : BackgroundService
{
    public const string HttpClientName = "webhooks";
    private const int FanOutBatch = 1000;
    private const int QueueBatch = 100;
    /// <summary>Deliveries one lease sends before it lets the endpoint go back to the pool (fairness between endpoints).</summary>
    private const int MaxPerRun = 2000;

    private readonly WebhookSettings _settings = options.Value;
    private readonly IReadOnlyList<TimeSpan> _delays = options.Value.RetryDelays();
    private readonly string _owner = $"{Environment.MachineName}:{Environment.ProcessId}:{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
    private readonly SemaphoreSlim _wake = new(0);
    // The queue depth gauge: a count now and then, not on every pass.
    private static readonly TimeSpan QueueCountInterval = TimeSpan.FromSeconds(10);
    private DateTimeOffset _queueCountedAt = DateTimeOffset.MinValue;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_settings.Dispatch) return;
        var running = new List<Task>();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var now = clock.GetUtcNow().ToUnixTimeMilliseconds();
                    // Catch up on the outbox (bounded, so claims are not starved by a long backlog).
                    for (var pass = 0; pass < 10; pass++)
                    {
                        if (await WebhookQueue.FanOutAsync(database, now, FanOutBatch, stoppingToken) < FanOutBatch) break;
                    }
                    running.RemoveAll(t => t.IsCompleted);
                    if (clock.GetUtcNow() - _queueCountedAt > QueueCountInterval)
                    {
                        _queueCountedAt = clock.GetUtcNow();
                        LedgerTelemetry.SetWebhookQueue(await WebhookQueue.CountPendingAsync(database, stoppingToken));
                    }
                    var free = _settings.MaxConcurrency - running.Count;
                    if (free > 0)
                    {
                        now = clock.GetUtcNow().ToUnixTimeMilliseconds();
                        var leaseUntil = now + (long)_settings.Lease.TotalMilliseconds;
                        foreach (var endpoint in await WebhookQueue.ClaimAsync(database, _owner, now, leaseUntil, free, stoppingToken))
                            running.Add(Task.Run(() => SendQueueAsync(endpoint, leaseUntil, stoppingToken), CancellationToken.None));
                    }
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // A database restart, say: the next pass tries again.
                    logger.LogError(ex, "Webhook dispatch pass failed");
                }
                await _wake.WaitAsync(_settings.PollInterval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        await Task.WhenAll(running);
    }

    /// <summary>Sends one leased endpoint's queue in order, then gives the lease back.</summary>
    private async Task SendQueueAsync(ClaimedEndpoint endpoint, long leaseUntil, CancellationToken stoppingToken)
    {
        var outcomes = new List<AttemptOutcome>();
        var failedInARow = endpoint.FailedInARow;
        string? disable = null;
        var owned = true;
        try
        {
            var signer = Signer(endpoint);
            var client = httpClients.CreateClient(HttpClientName);
            var sent = 0;
            var stop = false;
            while (!stop && sent < MaxPerRun)
            {
                var queue = await WebhookQueue.PendingAsync(database, endpoint.OrgId, endpoint.EndpointId, QueueBatch, stoppingToken);
                if (queue.Count == 0) break;
                foreach (var delivery in queue)
                {
                    if (delivery.NextAttemptAt > clock.GetUtcNow().ToUnixTimeMilliseconds()) { stop = true; break; }
                    var outcome = await SendAsync(client, endpoint, signer, delivery, stoppingToken);
                    outcomes.Add(outcome);
                    sent++;
                    if (outcome.Succeeded)
                    {
                        failedInARow = 0;
                    }
                    else if (!outcome.FailedForGood)
                    {
                        stop = true; // head-of-line: nothing after it goes before it
                        break;
                    }
                    else if (++failedInARow >= _settings.DisableAfterFailedDeliveries)
                    {
                        disable = $"Disabled at {IsoTime.Format(outcome.AttemptedAt)}: {failedInARow} deliver{(failedInARow == 1 ? "y" : "ies")} in a row failed on every try " +
                                  $"of the retry schedule (the last, {delivery.MessageId}: {outcome.Error}). Fix the receiver, then PATCH enabled: true; nothing queued is lost.";
                        stop = true;
                        break;
                    }
                    // A slow receiver: renew the lease before it could run out during the next send.
                    if (leaseUntil - clock.GetUtcNow().ToUnixTimeMilliseconds() < (long)(_settings.Timeout.TotalMilliseconds + 2000))
                    {
                        (owned, leaseUntil) = await FlushAsync(endpoint, outcomes, failedInARow, null, release: false);
                        if (!owned) return;
                    }
                }
                if (stop || disable is not null) break;
                // Recorded before the queue is read again, so what was sent is no longer pending.
                (owned, leaseUntil) = await FlushAsync(endpoint, outcomes, failedInARow, null, release: false);
                if (!owned) return;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down: what was sent is recorded below and the lease given back, so another server takes over at once.
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Sending to webhook {EndpointId} failed", endpoint.EndpointId);
        }
        finally
        {
            if (owned)
            {
                try
                {
                    await FlushAsync(endpoint, outcomes, failedInARow, disable, release: true);
                    if (disable is not null) logger.LogWarning("Webhook {EndpointId} disabled: {Reason}", endpoint.EndpointId, disable);
                }
                catch (Exception ex)
                {
                    // The lease runs out by itself; what was sent and not recorded is sent again (at-least-once).
                    logger.LogError(ex, "Recording webhook deliveries of {EndpointId} failed", endpoint.EndpointId);
                }
            }
            _wake.Release();
        }
    }

    private async Task<(bool Owned, long LeaseUntil)> FlushAsync(ClaimedEndpoint endpoint, List<AttemptOutcome> outcomes, long failedInARow, string? disable, bool release)
    {
        var now = clock.GetUtcNow().ToUnixTimeMilliseconds();
        var leaseUntil = now + (long)_settings.Lease.TotalMilliseconds;
        var owned = await WebhookQueue.RecordAsync(database, endpoint.OrgId, endpoint.EndpointId, _owner, outcomes, failedInARow, disable, now, leaseUntil, release, CancellationToken.None);
        outcomes.Clear();
        return (owned, leaseUntil);
    }

    /// <summary>Signs with the endpoint's secret, and with the previous one while it is still valid after a rotation.</summary>
    private Func<string, DateTimeOffset, string, string> Signer(ClaimedEndpoint endpoint)
    {
        StandardWebhook? current = null, previous = null;
        string? problem = null;
        try
        {
            current = new StandardWebhook(secrets.Reveal(endpoint.Secret, endpoint.OrgId));
            if (endpoint.PreviousSecret is not null && endpoint.PreviousSecretUntil > clock.GetUtcNow().ToUnixTimeMilliseconds())
                previous = new StandardWebhook(secrets.Reveal(endpoint.PreviousSecret, endpoint.OrgId));
        }
        catch (CryptographicException ex)
        {
            problem = ex.Message;
        }
        return (id, at, body) =>
        {
            if (current is null) throw new CryptographicException(problem);
            var signature = current.Sign(id, at, body);
            return previous is null ? signature : signature + " " + previous.Sign(id, at, body);
        };
    }

    private async Task<AttemptOutcome> SendAsync(HttpClient client, ClaimedEndpoint endpoint, Func<string, DateTimeOffset, string, string> sign,
        QueuedDelivery delivery, CancellationToken stoppingToken)
    {
        var at = clock.GetUtcNow();
        var started = Stopwatch.GetTimestamp();
        int? status = null;
        string? error;
        var retry = true;
        if (delivery.Payload is null)
        {
            error = "The event is no longer in the outbox.";
            retry = false;
        }
        else
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, endpoint.Url)
                {
                    Content = new StringContent(delivery.Payload, Encoding.UTF8, "application/json"),
                };
                request.Headers.Add("webhook-id", delivery.MessageId);
                request.Headers.Add("webhook-timestamp", at.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture));
                request.Headers.Add("webhook-signature", sign(delivery.MessageId, at, delivery.Payload));
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                timeout.CancelAfter(_settings.Timeout);
                try
                {
                    // Headers only: the receiver's body is not read (nor buffered, whatever its size).
                    using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
                    status = (int)response.StatusCode;
                    error = response.IsSuccessStatusCode ? null : $"HTTP {status} {response.ReasonPhrase}".TrimEnd();
                }
                catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                {
                    error = $"No answer within {_settings.Timeout.TotalSeconds:0.###} s.";
                }
            }
            catch (HttpRequestException ex)
            {
                error = Describe(ex);
            }
            catch (CryptographicException ex)
            {
                error = "Cannot sign: " + ex.Message;
            }
            catch (Exception ex) when (ex is UriFormatException or InvalidOperationException)
            {
                error = "The URL cannot be requested: " + ex.Message;
            }
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        var duration = (long)elapsed.TotalMilliseconds;
        var succeeded = error is null;
        var attempt = delivery.Attempts + 1;
        long? next = null;
        if (!succeeded && retry && attempt <= _delays.Count)
        {
            // +-20% jitter, so endpoints that failed together do not all retry in the same instant.
            var wait = _delays[(int)attempt - 1] * (0.8 + 0.4 * Random.Shared.NextDouble());
            next = clock.GetUtcNow().Add(wait).ToUnixTimeMilliseconds();
        }
        LedgerTelemetry.WebhookAttempts.Add(1, new KeyValuePair<string, object?>("outcome", succeeded ? "delivered" : next is null ? "failed" : "retry"));
        LedgerTelemetry.WebhookAttemptDuration.Record(elapsed.TotalSeconds);
        return new AttemptOutcome(delivery, at.ToUnixTimeMilliseconds(), status, duration, error is { Length: > 1000 } ? error[..1000] : error, succeeded, next);
    }

    private static string Describe(HttpRequestException ex)
    {
        for (Exception? inner = ex; inner is not null; inner = inner.InnerException)
        {
            if (inner is WebhookTargetRefusedException refused) return refused.Message;
        }
        return ex.InnerException is { } cause && cause.Message != ex.Message ? $"{ex.Message} ({cause.Message})" : ex.Message;
    }
}

public static class WebhookRegistration
{
    public static IServiceCollection AddLedgerWebhooks(this IServiceCollection services)
    {
        services.AddLedgerSettings<WebhookSettings>(WebhookSettings.Section);
        services.AddSingleton(sp => new WebhookSecrets(sp.GetRequiredService<IOptions<WebhookSettings>>().Value.SecretKey));
        services.AddHttpClient(WebhookDispatcher.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(sp =>
            {
                var allowPrivate = sp.GetRequiredService<IOptions<WebhookSettings>>().Value.AllowPrivateTargets;
                return new SocketsHttpHandler
                {
                    ConnectCallback = (context, ct) => WebhookTargets.ConnectAsync(context, allowPrivate, ct),
                    // Straight to the receiver: a proxy would be what the address check sees.
                    UseProxy = false,
                    // A redirect is an answer that is not 2xx, never a second target.
                    AllowAutoRedirect = false,
                    UseCookies = false,
                    PooledConnectionLifetime = TimeSpan.FromMinutes(2),
                    ConnectTimeout = TimeSpan.FromSeconds(10),
                };
            })
            .ConfigureHttpClient(c =>
            {
                c.Timeout = Timeout.InfiniteTimeSpan; // each send has its own (Ledger:Webhooks:Timeout)
                c.DefaultRequestHeaders.UserAgent.ParseAdd("LoyaltyLedger-Webhooks/1.0");
            })
            // The factory's per-request Information logs would be most of the log under load.
            .RemoveAllLoggers();
        services.AddHostedService<WebhookDispatcher>();
        return services;
    }
}
