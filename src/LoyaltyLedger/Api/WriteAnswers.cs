using System.Reflection;
using System.Text;
using Microsoft.AspNetCore.Http.Metadata;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The typed results of the writes that go through <see cref="IdempotentWriter"/>. A handler's
/// return type is its contract: <c>Task&lt;CreatedAnswer&lt;PostingResult&gt;&gt;</c> puts "201 with a
/// PostingResult" into the OpenAPI document, and is also the status the writer answers with (it reads
/// it from the same endpoint metadata), so the document and the answer cannot disagree. The answer
/// itself is the writer's: the fresh result, or the stored one on a replay, or a refusal.
/// </summary>
public abstract class WriteAnswer(WrittenAnswer answer) : IResult
{
    public Task ExecuteAsync(HttpContext httpContext) => answer.ExecuteAsync(httpContext);

    protected static void Declare(EndpointBuilder builder, int status, Type? result)
    {
        builder.Metadata.Add(new WriteMetadata(status, result ?? typeof(void)));
        builder.Metadata.Add(result is null
            ? new ProducesResponseTypeMetadata(status, typeof(void))
            : new ProducesResponseTypeMetadata(status, result, ["application/json"]));
    }
}

/// <summary>201 with <typeparamref name="T"/>: the write created something (a posting, a customer, a key...).</summary>
public sealed class CreatedAnswer<T>(WrittenAnswer answer) : WriteAnswer(answer), IEndpointMetadataProvider
{
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, StatusCodes.Status201Created, typeof(T));
}

/// <summary>200 with <typeparamref name="T"/>: the write changed something that was there (a rotation, a vault basket).</summary>
public sealed class OkAnswer<T>(WrittenAnswer answer) : WriteAnswer(answer), IEndpointMetadataProvider
{
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, StatusCodes.Status200OK, typeof(T));
}

/// <summary>204 without a body: the write removed something (a revoked key, a deleted webhook).</summary>
public sealed class NoContentAnswer(WrittenAnswer answer) : WriteAnswer(answer), IEndpointMetadataProvider
{
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, StatusCodes.Status204NoContent, null);
}

/// <summary>202 with <typeparamref name="T"/>: the write queued work that happens later (a webhook ping, a redelivery).</summary>
public sealed class AcceptedAnswer<T>(WrittenAnswer answer) : WriteAnswer(answer), IEndpointMetadataProvider
{
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, StatusCodes.Status202Accepted, typeof(T));
}

/// <summary>
/// What a write answers, before the endpoint's typed result wraps it: a status and a JSON body (the
/// fresh result, the stored one on a replay, or the problem of a key still in use), or no body.
/// </summary>
public sealed class WrittenAnswer(int status, string? body, string contentType = "application/json") : IResult
{
    public int Status => status;

    public Task ExecuteAsync(HttpContext httpContext) =>
        body is null
            ? Results.StatusCode(status).ExecuteAsync(httpContext)
            : Results.Content(body, contentType, Encoding.UTF8, status).ExecuteAsync(httpContext);
}
