using System.Text.Encodings.Web;
using System.Text.Json;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// 200 with a page whose JSON is written by a hand-kept writer (<c>LedgerResponseWriter</c>) instead
/// of the serializer. The body is the bytes the serializer would write with the same settings (the
/// writer's tests hold it to them), and the endpoint declares its response type as before
/// (<c>Produces</c>), so the OpenAPI document is unchanged.
/// </summary>
public sealed class WrittenPage<T>(T value, Action<Utf8JsonWriter, T> write, JavaScriptEncoder? encoder) : IResult, IStatusCodeHttpResult, IValueHttpResult<T>
{
    public int? StatusCode => StatusCodes.Status200OK;

    public T? Value => value;

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json; charset=utf-8";
        // Onto the response's pipe, flushed once: Kestrel sends a page in one write.
        var body = response.BodyWriter;
        await using (var writer = new Utf8JsonWriter(body, new JsonWriterOptions { Encoder = encoder }))
        {
            write(writer, value);
        }
        // Without the request's token, as the serializer's path flushes: a client gone mid-page ends
        // the write quietly rather than as an error.
        await body.FlushAsync();
    }
}
