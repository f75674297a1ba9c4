using System.Reflection;
using System.Text.Json.Nodes;
using LoyaltyLedger.PointsLedger;
using Microsoft.OpenApi;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// What an endpoint answers besides its success: the statuses of its documented refusals. The
/// OpenAPI document is built from this metadata (and from the typed results), so a status that is
/// not declared here is not documented, and the conformance test fails on it.
/// </summary>
public sealed record RefusalMetadata(IReadOnlyList<int> Statuses);

/// <summary>Marks a write (added by its typed result, <see cref="WriteAnswer"/>): it takes an <c>Idempotency-Key</c> header and answers <see cref="Status"/> on success.</summary>
public sealed record WriteMetadata(int Status, Type Result);

/// <summary>Which error body an endpoint refuses with: the native problem, or the points-ledger spec's body.</summary>
public enum ErrorBody
{
    Problem,
    PointsLedger,
}

public sealed record ErrorBodyMetadata(ErrorBody Body);

public static class ApiContract
{
    /// <summary>Declares the refusals an endpoint answers beyond those every call can get (see Hosting/ApiReference.cs).</summary>
    public static TBuilder Refuses<TBuilder>(this TBuilder endpoint, params int[] statuses) where TBuilder : IEndpointConventionBuilder
    {
        endpoint.WithMetadata(new RefusalMetadata(statuses));
        return endpoint;
    }

    /// <summary>The endpoint refuses with the points-ledger spec's <c>{errors, warnings}</c> body.</summary>
    public static TBuilder RefusesWithLedgerErrors<TBuilder>(this TBuilder endpoint) where TBuilder : IEndpointConventionBuilder
    {
        endpoint.WithMetadata(new ErrorBodyMetadata(ErrorBody.PointsLedger));
        return endpoint;
    }

    /// <summary>The success status of the write an endpoint declared by its typed result.</summary>
    public static int WriteStatus(HttpContext http) =>
        http.GetEndpoint()?.Metadata.GetMetadata<WriteMetadata>()?.Status
        ?? throw new InvalidOperationException("A write endpoint must return CreatedAnswer<T>, OkAnswer<T> or NoContentAnswer.");

    /// <summary>Shows an example answer taken from a spec file (embedded from Api/Examples) on the success status.</summary>
    public static RouteHandlerBuilder WithSpecExample(this RouteHandlerBuilder endpoint, string file, string summary) =>
        endpoint.AddOpenApiOperationTransformer((operation, context, ct) =>
        {
            var success = operation.Responses?.FirstOrDefault(r => r.Key.StartsWith('2')).Value as OpenApiResponse;
            if (success?.Content?.TryGetValue("application/json", out var media) == true)
            {
                media.Examples ??= new Dictionary<string, IOpenApiExample>();
                media.Examples[Path.GetFileNameWithoutExtension(file)] = new OpenApiExample { Summary = summary, Value = Example(file) };
            }
            return Task.CompletedTask;
        });

    /// <summary>An example answer taken from a spec file, embedded in the assembly.</summary>
    public static JsonNode Example(string file)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"LoyaltyLedger.Server.Api.Examples.{file}")
            ?? throw new InvalidOperationException($"The example {file} is not embedded.");
        return JsonNode.Parse(stream)!;
    }

    /// <summary>The points-ledger error body type, for the document.</summary>
    public static readonly Type LedgerErrorBodyType = typeof(LedgerErrorBody);
}
