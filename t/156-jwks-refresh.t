# How soon a key removed from an https key set stops working
# (docs/directives.md, acs_notify_entra): a worker fetches the set
# jwks_refresh after its previous fetch started, not ended, so a slow key
# server does not stretch the period; a removed key is refused within
# jwks_refresh plus the time of one fetch (cut at 10 s).  The key server is
# a stock nginx that sends the set slowly (limit_rate).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AcsTest::Util;
use AcsTest::Entra;
use AcsTest::FakeNH;
use AcsTest::Server;

my $srv = AcsTest::Server->new('156-jwks-refresh');
my $keys = AcsTest::Entra::setup($srv->root . '/keys');

# --- the key server: about 6 KB at 2 KB a second, two seconds a fetch

my $ks = AcsTest::Server->new('156-jwks-server');
my $tls = AcsTest::FakeNH::setup_ca($ks->root . '/ca');
my $www = $ks->root . '/www';
mkdir $www;

$ks->write_conf(listen => 'ssl', server => <<"SERVER");
        ssl_certificate $tls->{cert};
        ssl_certificate_key $tls->{key};
        location = /keys {
            alias $www/keys.json;
            default_type application/json;
            limit_rate 2k;
        }
SERVER

my $URL = 'https://127.0.0.1:' . $ks->port . '/keys';

# the key set served from now on, padded with white space
sub publish {
    my (@kids) = @_;
    my $all = decode_json(do { local (@ARGV, $/) = $keys->{jwks}; <> });
    my %want = map { $AcsTest::Entra::KID{$_} => 1 } @kids;
    my $json = encode_json({ keys => [ grep { $want{$_->{kid}} } @{ $all->{keys} } ] });
    $json =~ s/\}$/(' ' x 6000) . '}'/e;
    open my $fh, '>', "$www/keys.json.new" or die $!;
    print $fh $json;
    close $fh;
    rename "$www/keys.json.new", "$www/keys.json" or die $!;
}

my $REFRESH = 5;

$srv->write_conf(workers => 1, log_level => 'debug', server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_entra jwks=$URL jwks_ca_file=$tls->{ca}
                             jwks_refresh=${REFRESH}s
                             audience=api://acs-notify-test
                             tenant=$AcsTest::Entra::TENANT;
        }
SERVER

my $key1 = AcsTest::Entra::token(key => 'key1');

sub deliver {
    my ($token) = @_;
    my ($st) = $srv->request(POST => '/eg', fixture('eg-chat-message-received.json'), {
        'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json',
        Authorization => "Bearer $token" });
    return $st;
}

# the error log until a line matches re, or secs
sub until_log {
    my ($re, $secs) = @_;
    my $text = '';
    my $deadline = time + $secs;
    while (time < $deadline) {
        $text .= $srv->new_log;
        return $text if $text =~ $re;
        sleep 0.2;
    }
    return $text;
}

publish('key1', 'key2');
$ks->start;
$srv->start;

my $FETCHED = qr/acs_notify: jwks "\Q$URL\E" fetched in (\d+)ms, next in (\d+)ms/;

my $log = until_log($FETCHED, 20);
my ($took, $next) = $log =~ $FETCHED;
ok(defined $took && $took >= 1000, 'a fetch from the slow key server takes a while (' . ($took // 'none') . 'ms)');
# a fetch slower than jwks_refresh is followed by the next one at once
is($next, defined $took && $took < $REFRESH * 1000 ? $REFRESH * 1000 - $took : 1,
   'the next fetch starts jwks_refresh after this one started, not ended');

for (1 .. 100) { last if deliver($key1) == 200; sleep 0.2 }
is(deliver($key1), 200, 'the key verifies tokens');

# --- key1 removed: refused within jwks_refresh and one fetch

publish('key2');
my $removed = time;
my $st;
while (time < $removed + $REFRESH + 10 + 5) {
    $st = deliver($key1);
    last if $st == 401;
    sleep 0.2;
}
is($st, 401, 'the removed key is refused within jwks_refresh, one fetch and a margin');
like($srv->new_log, qr/rejected 401 token: unknown token kid/, '... as an unknown kid');

$srv->stop;
$ks->stop;

my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

done_testing();
