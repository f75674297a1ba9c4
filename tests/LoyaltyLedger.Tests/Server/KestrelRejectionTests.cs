using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// Requests Kestrel refuses before any middleware runs (a NUL in the path, a malformed request line
/// or header, a target or headers over the limits) get the documented problem body, not Kestrel's
/// bare status with an empty body; and nothing else on the connection changes. Real Kestrel on
/// 127.0.0.1, raw bytes over a socket: no HTTP client would send these.
/// </summary>
public abstract class KestrelRejectionTests(DatabaseFixture db) : IAsyncLifetime
{
    private WebApplication? _app;
    private LedgerDatabase? _database;
    private int _port;
    private IssuedKey? _key;

    public async Task InitializeAsync()
    {
        // A second server over the class's database, as a second process would be.
        _database = db.OpenSecondInstance();
        _app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = _database,
            Configure = builder =>
            {
                builder.WebHost.UseUrls("http://127.0.0.1:0");
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Ledger:ExpiryInterval"] = "0" });
            },
        });
        await _app.StartAsync();
        _port = new Uri(_app.Urls.Single()).Port;
        var org = await Tenants.CreateOrganizationAsync(_database, "kestrel " + Guid.NewGuid().ToString("N")[..8], TimeProvider.System, CancellationToken.None);
        _key = await Tenants.IssueKeyAsync(_database, org.OrgId, KeyRole.Admin, TimeProvider.System, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        if (_database is not null) await _database.DisposeAsync();
    }

    private string Auth => "Authorization: Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_key!.KeyId}:{_key.Secret}")) + "\r\n";

    /// <summary>Sends raw bytes on one connection and reads until the server closes it (or goes quiet).</summary>
    /// <remarks>
    /// Reading starts before writing: a server that refuses a large request answers and closes
    /// while the rest is still being sent, and an answer read late could be lost to the reset.
    /// </remarks>
    private async Task<string> SendRawAsync(byte[] request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", _port);
        var stream = client.GetStream();
        var received = new MemoryStream();
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var reading = Task.Run(async () =>
        {
            var buffer = new byte[8192];
            try
            {
                int n;
                while ((n = await stream.ReadAsync(buffer, quiet.Token)) > 0) received.Write(buffer, 0, n);
            }
            catch (OperationCanceledException) { /* a kept-alive connection: what arrived is the answer */ }
            catch (IOException) { /* reset after the answer */ }
        });
        try
        {
            await stream.WriteAsync(request, quiet.Token);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            // Kestrel stops reading a request it has refused; its answer is still read above.
        }
        await reading;
        return Encoding.Latin1.GetString(received.ToArray());
    }

    private Task<string> SendRawAsync(string request) => SendRawAsync(Encoding.Latin1.GetBytes(request));

    /// <summary>Splits one HTTP/1.1 answer with a Content-Length body into status, headers and body.</summary>
    private static (int Status, Dictionary<string, string> Headers, string Body, string After) Parse(string raw)
    {
        var headEnd = raw.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        headEnd.ShouldBeGreaterThan(0, raw);
        var lines = raw[..headEnd].Split("\r\n");
        var headers = lines.Skip(1).Select(l => l.Split(": ", 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);
        var length = headers.TryGetValue("Content-Length", out var cl) ? int.Parse(cl, System.Globalization.CultureInfo.InvariantCulture) : 0;
        var body = raw.Substring(headEnd + 4, length);
        return (int.Parse(lines[0].AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture), headers, body, raw[(headEnd + 4 + length)..]);
    }

    private async Task<string> SnapshotAsync() => await LedgerAudit.SnapshotAsync(_database!, _key!.OrgId);

    public static TheoryData<string, string, int, string> Rejected => new()
    {
        { "a NUL in the path", "DELETE /v1/keys/a%00b HTTP/1.1\r\nHost: x\r\n{auth}\r\n", 400, "invalid_request" },
        { "a raw NUL in the path", "DELETE /v1/keys/a\0b HTTP/1.1\r\nHost: x\r\n{auth}\r\n", 400, "invalid_request" },
        { "a space in the path", "GET /v1/pro grams HTTP/1.1\r\nHost: x\r\n{auth}\r\n", 400, "invalid_request" },
        { "no Host header", "GET /v1/programs HTTP/1.1\r\n{auth}\r\n", 400, "invalid_request" },
        { "a malformed header", "GET /v1/programs HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n{auth}\r\n", 400, "invalid_request" },
        { "two Content-Length headers", "POST /v1/stores HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nContent-Length: 13\r\n{auth}\r\n{\"code\":\"s\"}", 400, "invalid_request" },
        { "a request line that is not HTTP", "HELLO\r\n\r\n", 400, "invalid_request" },
        { "a target over the limit", "GET /v1/" + new string('a', 10_000) + " HTTP/1.1\r\nHost: x\r\n{auth}\r\n", 414, "uri_too_long" },
        { "headers over the limit", "GET /v1/programs HTTP/1.1\r\nHost: x\r\nX-Big: " + new string('a', 40_000) + "\r\n{auth}\r\n", 431, "headers_too_large" },
        { "an unknown HTTP version", "GET /v1/programs HTTP/1.7\r\nHost: x\r\n{auth}\r\n", 505, "http_version_not_supported" },
    };

    [Theory]
    [MemberData(nameof(Rejected))]
    public async Task a_request_kestrel_refuses_itself_gets_the_problem_body_and_writes_nothing(string what, string request, int status, string code)
    {
        var before = await SnapshotAsync();

        var raw = await SendRawAsync(request.Replace("{auth}", Auth, StringComparison.Ordinal));

        var (answered, headers, body, after) = Parse(raw);
        answered.ShouldBe(status, what);
        headers["Content-Type"].ShouldBe("application/problem+json", what);
        var problem = JsonDocument.Parse(body).RootElement;
        problem.GetProperty("status").GetInt32().ShouldBe(status, what);
        problem.GetProperty("code").GetString().ShouldBe(code, what);
        problem.GetProperty("detail").GetString().ShouldNotBeNullOrWhiteSpace(what);
        after.ShouldBeEmpty(what);
        (await SnapshotAsync()).ShouldBe(before, what);
    }

    [Fact]
    public async Task answers_on_a_kept_alive_connection_pass_through_unchanged_until_kestrel_refuses_one()
    {
        var get = $"GET /v1/programs HTTP/1.1\r\nHost: x\r\n{Auth}\r\n";

        var raw = await SendRawAsync(get + get + "GET /v1/pro grams HTTP/1.1\r\nHost: x\r\n\r\n");

        var first = Parse(raw.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) ? Dechunk(raw, out var afterFirst) : throw new ShouldAssertException(raw));
        first.Status.ShouldBe(200);
        first.Body.ShouldBe("[]");
        var second = Parse(Dechunk(afterFirst, out var afterSecond));
        second.Status.ShouldBe(200);
        second.Body.ShouldBe("[]");
        var third = Parse(afterSecond);
        third.Status.ShouldBe(400);
        JsonDocument.Parse(third.Body).RootElement.GetProperty("code").GetString().ShouldBe("invalid_request");
    }

    [Fact]
    public async Task a_broken_or_oversized_chunked_body_gets_a_documented_problem()
    {
        var before = await SnapshotAsync();
        var head = $"POST /v1/stores HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{Auth}\r\n";

        var broken = Parse(Dechunk(await SendRawAsync(head + "zz\r\n{}\r\n0\r\n\r\n"), out _));
        // One JSON string of 1.3 MB: the body cannot be refused as JSON before it has passed the limit.
        var huge = new StringBuilder(head).Append("9\r\n{\"code\":\"\r\n");
        for (var i = 0; i < 40; i++) huge.Append("8000\r\n").Append('x', 0x8000).Append("\r\n");
        var oversized = Parse(Dechunk(await SendRawAsync(huge.Append("2\r\n\"}\r\n0\r\n\r\n").ToString()), out _));

        broken.Status.ShouldBe(400);
        JsonDocument.Parse(broken.Body).RootElement.GetProperty("code").GetString().ShouldBe("invalid_request");
        oversized.Status.ShouldBe(413);
        JsonDocument.Parse(oversized.Body).RootElement.GetProperty("code").GetString().ShouldBe("payload_too_large");
        (await SnapshotAsync()).ShouldBe(before);
    }

    /// <summary>The first answer of <paramref name="raw"/> with its chunked body made a Content-Length one; the rest after it.</summary>
    private static string Dechunk(string raw, out string rest)
    {
        var headEnd = raw.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4;
        var head = raw[..(headEnd - 2)];
        if (!head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            var parsed = Parse(raw);
            rest = parsed.After;
            return raw[..(raw.Length - parsed.After.Length)];
        }
        var body = new StringBuilder();
        var at = headEnd;
        while (true)
        {
            var lineEnd = raw.IndexOf("\r\n", at, StringComparison.Ordinal);
            var size = Convert.ToInt32(raw[at..lineEnd], 16);
            at = lineEnd + 2;
            if (size == 0) { at += 2; break; }
            body.Append(raw, at, size);
            at += size + 2;
        }
        rest = raw[at..];
        return head.Replace("Transfer-Encoding: chunked", $"Content-Length: {body.Length}", StringComparison.OrdinalIgnoreCase) + "\r\n" + body;
    }
}

public sealed class KestrelRejectionTestsOnSqlite(SqliteDatabase db) : KestrelRejectionTests(db), IClassFixture<SqliteDatabase>;

public sealed class KestrelRejectionTestsOnPostgres(PostgresDatabase db) : KestrelRejectionTests(db), IClassFixture<PostgresDatabase>;
