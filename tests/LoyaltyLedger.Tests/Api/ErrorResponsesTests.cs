using LoyaltyLedger.Server.Api;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace LoyaltyLedger.Tests.Api;

/// <summary>How the errors a database throws reach a client.</summary>
public sealed class ErrorResponsesOnPostgresTests(PostgresDatabase db) : IClassFixture<PostgresDatabase>
{
    private HttpContext Context(string method = "POST")
    {
        var context = new DefaultHttpContext { RequestServices = new ServiceCollection().AddSingleton(db.Database).BuildServiceProvider() };
        context.Request.Method = method;
        return context;
    }

    [Fact]
    public void a_connection_lost_answers_500_saying_a_write_may_have_been_committed_not_that_nothing_was()
    {
        var lost = new Npgsql.NpgsqlException("Exception while reading from stream", new EndOfStreamException());

        var problem = ErrorResponses.Classify(lost, Context());

        problem.Status.ShouldBe(500);
        problem.Code.ShouldBe("internal_error");
        problem.Detail.ShouldContain("may have been committed");
        problem.Detail.ShouldContain("same Idempotency-Key");
        ErrorResponses.NamesDotNet(problem.Detail).ShouldBeFalse();
        // A read wrote nothing and has no key to name.
        ErrorResponses.Classify(lost, Context("GET")).Detail.ShouldBe("The connection to the database was lost; retry the request.");
    }

    [Fact]
    public void a_deadlock_answers_503_busy_and_any_other_database_error_500_nothing_written()
    {
        var deadlock = new Npgsql.PostgresException("deadlock detected", "ERROR", "ERROR", "40P01");
        var other = new Npgsql.PostgresException("division by zero", "ERROR", "ERROR", "22012");

        ErrorResponses.Classify(deadlock, Context()).ShouldSatisfyAllConditions(
            p => p.Status.ShouldBe(503),
            p => p.Code.ShouldBe("busy"),
            p => p.Detail.ShouldBe("The ledger is busy; retry with the same Idempotency-Key."));
        // A read has no Idempotency-Key to name.
        ErrorResponses.Classify(deadlock, Context("GET")).Detail.ShouldBe("The ledger is busy; retry the request.");
        ErrorResponses.Classify(other, Context()).ShouldSatisfyAllConditions(
            p => p.Status.ShouldBe(500),
            p => p.Detail.ShouldBe("An unexpected error occurred; nothing was written."));
    }
}
