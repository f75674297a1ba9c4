using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.Server.Api;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Gives the requests Kestrel refuses by itself the same problem body as every other error.
/// </summary>
/// <remarks>
/// Kestrel answers a request it cannot parse (a NUL or a space in the path, a malformed header, no
/// Host) or that is over its limits (a target too long: 414; headers too large: 431) before any
/// middleware runs, with a bare status and an empty body that the application cannot change.
/// It does announce each such rejection on its diagnostic source
/// (<c>Microsoft.AspNetCore.Server.Kestrel.BadRequest</c>) before it writes the answer; the listener
/// below arms the connection's writer, which then holds back that one answer and, if it is exactly
/// the server's bare response (a status line and headers, <c>Content-Length: 0</c>, no body), sends
/// it with a problem body instead. Every other byte of the connection passes straight through.
/// </remarks>
public static class RejectedRequests
{
    public const string BadRequestEvent = "Microsoft.AspNetCore.Server.Kestrel.BadRequest";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Adds the connection middleware to an endpoint (every endpoint, via <c>ConfigureEndpointDefaults</c>).</summary>
    public static void UseProblemBodies(this ListenOptions listen) => listen.Use(next => async connection =>
    {
        var transport = connection.Transport;
        var writer = new RejectionAwareWriter(transport.Output);
        connection.Features.Set(writer);
        connection.Transport = new Pipe(transport.Input, writer);
        try
        {
            await next(connection);
        }
        finally
        {
            connection.Transport = transport;
        }
    });

    /// <summary>Listens for Kestrel's rejections on the host's diagnostic source.</summary>
    public static IDisposable Listen(DiagnosticListener listener) =>
        listener.Subscribe(new Observer(), name => name == BadRequestEvent);

    /// <summary>The problem a rejection is answered with: the status's code, and Kestrel's reason when it has one.</summary>
    public static ApiProblem ProblemFor(int status, string? reason)
    {
        var problem = ErrorResponses.ForStatus(null, null, null, null, status);
        // Kestrel's reasons are about HTTP ("Invalid request line", "Request is missing Host header");
        // the part after a colon is the offending text, which it leaves empty unless logging at Information.
        var text = reason?.Split(": '", 2)[0].TrimEnd('.', ' ');
        return status == 400 && !string.IsNullOrEmpty(text) && !ErrorResponses.NamesDotNet(text)
            ? problem with { Detail = $"The server could not read the request: {text}." }
            : problem;
    }

    private sealed class Observer : IObserver<KeyValuePair<string, object?>>
    {
        public void OnNext(KeyValuePair<string, object?> value)
        {
            if (value.Value is not IFeatureCollection features) return;
            // An unknown feature falls through to the connection's features, where the writer is.
            if (features[typeof(RejectionAwareWriter)] is not RejectionAwareWriter writer) return;
            // A response already under way cannot be replaced; a HEAD answer has no body.
            if (features.Get<IHttpResponseFeature>()?.HasStarted == true) return;
            var request = features.Get<IHttpRequestFeature>();
            if (string.Equals(request?.Method, "HEAD", StringComparison.Ordinal)) return;
            // HTTP/2 and 3 multiplex streams over the connection's writer and answer a bad stream
            // in frames of their own: only an HTTP/1 connection is held back and rewritten.
            if (request?.Protocol is { } protocol && (HttpProtocol.IsHttp2(protocol) || HttpProtocol.IsHttp3(protocol))) return;
            var error = features.Get<IBadRequestExceptionFeature>()?.Error as Microsoft.AspNetCore.Http.BadHttpRequestException;
            writer.Arm(error?.Message);
        }

        public void OnError(Exception error) { }

        public void OnCompleted() { }
    }

    private sealed class Pipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    /// <summary>The transport's writer, holding back the next answer once a rejection is announced.</summary>
    private sealed class RejectionAwareWriter(PipeWriter inner) : PipeWriter
    {
        private ArrayBufferWriter<byte>? _held;
        private string? _reason;

        public void Arm(string? reason)
        {
            _reason = reason;
            _held = new ArrayBufferWriter<byte>(512);
        }

        public override void Advance(int bytes)
        {
            if (_held is { } held) held.Advance(bytes);
            else inner.Advance(bytes);
        }

        public override Memory<byte> GetMemory(int sizeHint = 0) => _held is { } held ? held.GetMemory(sizeHint) : inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => _held is { } held ? held.GetSpan(sizeHint) : inner.GetSpan(sizeHint);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            Release();
            return inner.FlushAsync(cancellationToken);
        }

        public override void Complete(Exception? exception = null)
        {
            Release();
            inner.Complete(exception);
        }

        public override ValueTask CompleteAsync(Exception? exception = null)
        {
            Release();
            return inner.CompleteAsync(exception);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes + (_held?.WrittenCount ?? 0);

        private void Release()
        {
            if (_held is not { } held) return;
            _held = null;
            if (held.WrittenCount == 0) return;
            inner.Write(Rewrite(held.WrittenSpan, _reason));
        }

        /// <summary>The server's bare answer with a problem body; anything else unchanged.</summary>
        private static byte[] Rewrite(ReadOnlySpan<byte> answer, string? reason)
        {
            const string EmptyBody = "\r\nContent-Length: 0\r\n";
            var text = Encoding.Latin1.GetString(answer);
            var headEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (!text.StartsWith("HTTP/1.", StringComparison.Ordinal) || headEnd != text.Length - 4 || text.Length < 12
                || !text.Contains(EmptyBody, StringComparison.Ordinal)
                || text.Contains("\r\nContent-Type:", StringComparison.OrdinalIgnoreCase)
                || !int.TryParse(text.AsSpan(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var status))
                return answer.ToArray();
            var body = JsonSerializer.SerializeToUtf8Bytes(ProblemFor(status, reason), Json);
            var head = text.Replace(EmptyBody,
                $"\r\nContent-Type: application/problem+json\r\nContent-Length: {body.Length.ToString(CultureInfo.InvariantCulture)}\r\n", StringComparison.Ordinal);
            return [.. Encoding.Latin1.GetBytes(head), .. body];
        }
    }
}
