# Entra rotates its signing keys: a token with a kid the worker does not
# know makes it read the JWKS file again when the file changed on disk, so a
# cron job refreshing the file is enough; an unchanged file is not re-read.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Copy qw(copy);
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

sub deliver {
    my (%o) = @_;
    my ($st) = $srv->request(POST => '/eg', fixture('eg-chat-message-received.json'), {
        'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json',
        Authorization => 'Bearer ' . AcsTest::Entra::token(%o) });
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

$srv->stop;
my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $srv->whole_log;
is(join("\n", @bad), '', 'no alert, crit or emerg');

done_testing();
