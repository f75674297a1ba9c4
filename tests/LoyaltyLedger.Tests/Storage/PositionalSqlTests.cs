using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// The rewrite of a batch's named parameters to positional ones (no database): each name takes the
/// position of its first use, and nothing inside a literal, a quoted identifier or a comment, nor an
/// operator that starts with <c>@</c>, is taken for a parameter.
/// </summary>
public class PositionalSqlTests
{
    [Fact]
    public void each_name_takes_the_position_of_its_first_use_and_keeps_it()
    {
        var sql = PositionalSql.Of("UPDATE wallets SET balance = @balance, updated_at = @now, last_activity_at = @now WHERE org_id = @org AND wallet_id = @walletId");
        sql.Sql.ShouldBe("UPDATE wallets SET balance = $1, updated_at = $2, last_activity_at = $2 WHERE org_id = $3 AND wallet_id = $4");
        sql.Names.ShouldBe(["balance", "now", "org", "walletId"]);
    }

    [Fact]
    public void an_at_sign_in_a_literal_a_quoted_name_or_a_comment_is_no_parameter()
    {
        var sql = PositionalSql.Of("""
            SELECT '{"id":"evt_' || 'it''s @notAName', "col@x" -- @neither
            /* @nor */ FROM t WHERE a = @a AND b::text = @b_2
            """);
        sql.Names.ShouldBe(["a", "b_2"]);
        sql.Sql.ShouldContain("'it''s @notAName'");
        sql.Sql.ShouldContain("\"col@x\" -- @neither");
        sql.Sql.ShouldContain("/* @nor */");
        sql.Sql.ShouldEndWith("a = $1 AND b::text = $2");
    }

    [Fact]
    public void an_operator_that_starts_with_an_at_sign_stays_an_operator()
    {
        var sql = PositionalSql.Of("SELECT 1 FROM t WHERE tags @> @wanted");
        sql.Sql.ShouldBe("SELECT 1 FROM t WHERE tags @> $1");
        sql.Names.ShouldBe(["wanted"]);
    }
}
