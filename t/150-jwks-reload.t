# Entra rotates its signing keys: a token with a kid the worker does not
# know makes it read the JWKS file again when the file changed on disk, so a
# cron job refreshing the file is enough; an unchanged file is not re-read.
# Every worker also looks at the file every jwks_refresh, and a key removed
# from it is refused at once, by cached verdicts too.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Copy qw(copy);
use JSON::PP ();
use AcsTest::Util;
use AcsTest::Entra;
use AcsTest::Server;

my $srv = AcsTest::Server->new('150-jwks-reload');
my $keys = AcsTest::Entra::setup($srv->root . '/keys');
my $jwks = $srv->root . '/jwks.json';
copy($keys->{jwks_key1only}, $jwks) or die $!;

$srv->write_conf(server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_entra jwks=$jwks audience=api://acs-notify-test
                             tenant=$AcsTest::Entra::TENANT;
        }
SERVER
$srv->start;

# token => a token, or the options of AcsTest::Entra::token
sub deliver {
    my (%o) = @_;
    my $token = delete $o{token} // AcsTest::Entra::token(%o);
    my ($st) = $srv->request(POST => '/eg', fixture('eg-chat-message-received.json'), {
        'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json',
        Authorization => "Bearer $token" });
    return $st;
}

is(deliver(key => 'key1'), 200, 'a token of the configured key is accepted');
is(deliver(key => 'key2'), 401, 'a token of a key not in the file is refused');
like($srv->new_log, qr/rejected 401 token: unknown token kid/, '... as an unknown kid');

# Entra published key2: the file is refreshed (its mtime changes)
sleep 1.1;
copy($keys->{jwks}, "$jwks.new") or die $!;
rename "$jwks.new", $jwks or die $!;
utime undef, undef, $jwks;

is(deliver(key => 'key2'), 401, 'within 10 s of the last check the file is not read again');
sleep 10;
is(deliver(key => 'key2'), 200, 'after that, the new key is found without a reload');
like($srv->new_log, qr/acs_notify: jwks "\Q$jwks\E" reloaded, 2 keys/, 'the reload is logged at notice');
is(deliver(key => 'key1'), 200, 'the old key still works');

# a broken refresh keeps the keys the worker has
sleep 10.1;
open my $fh, '>', $jwks or die $!;
print $fh "{not json";
close $fh;
utime undef, undef, $jwks;
is(deliver(key => 'key2', kid => 'test-kid-unknown'), 401, 'an unknown kid with a broken file: 401');
like($srv->new_log, qr/\[error\].*acs_notify: jwks "\Q$jwks\E" not reloaded: is not a JSON Web Key Set/, 'the broken file is logged at error');
is(deliver(key => 'key2'), 200, 'the keys already loaded keep working');

# a key removed from the file: the verdict cached for its token goes too

my $t1 = AcsTest::Entra::token(key => 'key1');
is(deliver(token => $t1), 200, 'a key1 token is verified (and cached)');

sleep 1.1;
write_jwks($jwks, 'key2');
sleep 10;
is(deliver(key => 'key2', kid => 'test-kid-unknown'), 401, 'an unknown kid makes the worker read the changed file');
like($srv->new_log, qr/jwks "\Q$jwks\E" reloaded, 1 keys/, '... which now has key2 only');
is(deliver(token => $t1), 401, 'the cached key1 token is refused now');
is(deliver(key => 'key2'), 200, 'key2 tokens go on');

$srv->stop;

# every worker reads a changed file within jwks_refresh, unknown kid or not

copy($keys->{jwks}, $jwks) or die $!;
$srv->write_conf(workers => 2, listen => 'reuseport', server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_entra jwks=$jwks jwks_refresh=1s audience=api://acs-notify-test
                             tenant=$AcsTest::Entra::TENANT;
        }
SERVER
$srv->start;

my %seen;
$seen{ deliver(token => $t1) }++ for 1 .. 20;
is(join(',', %seen), '200,20', 'key1 tokens are verified and cached by both workers');

sleep 1.1;
write_jwks($jwks, 'key2');
sleep 2.5;

%seen = ();
$seen{ deliver(token => $t1) }++ for 1 .. 20;
is(join(',', %seen), '401,20', 'after jwks_refresh, no worker takes the cached key1 token');
%seen = ();
$seen{ deliver(key => 'key1') }++ for 1 .. 20;
is(join(',', %seen), '401,20', '... nor a fresh one');
%seen = ();
$seen{ deliver(key => 'key2') }++ for 1 .. 20;
is(join(',', %seen), '200,20', 'key2 tokens are verified by every worker');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

# a JWKS file with the keys of these names only, replaced whole
sub write_jwks {
    my ($path, @names) = @_;
    my $all = JSON::PP::decode_json(do { local (@ARGV, $/) = $keys->{jwks}; <> });
    my %want = map { $AcsTest::Entra::KID{$_} => 1 } @names;
    open my $fh, '>', "$path.new" or die $!;
    print $fh JSON::PP::encode_json({ keys => [ grep { $want{$_->{kid}} } @{ $all->{keys} } ] });
    close $fh;
    rename "$path.new", $path or die $!;
}

done_testing();
